from __future__ import annotations

from auteur.errors import ApplicationError
from webhooks.ssrf import WebhookUrlRefused

__all__ = ["WebhookLimitReached", "WebhookNotFound", "WebhookUrlRefused"]


class WebhookNotFound(ApplicationError):
    code = "webhook_not_found"


class WebhookLimitReached(ApplicationError):
    code = "webhook_limit_reached"
