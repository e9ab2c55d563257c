from __future__ import annotations

from auteur.core.errors import ApplicationError
from webhooks.ssrf import WebhookUrlRefused

__all__ = ["WebhookBacklogFull", "WebhookLimitReached", "WebhookNotFound", "WebhookUrlRefused"]


class WebhookNotFound(ApplicationError):
    code = "webhook_not_found"


class WebhookLimitReached(ApplicationError):
    code = "webhook_limit_reached"


class WebhookBacklogFull(ApplicationError):
    """429: the webhook has too many messages waiting; `details.retry_after_seconds` says when
    the ones in flight will have ended."""

    code = "webhook_backlog_full"
