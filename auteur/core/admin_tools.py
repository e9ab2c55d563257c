"""Small admin helpers shared by the apps (a foundation module: imports no app)."""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_BREAK_AFTER = re.compile(r"([.@_-])")


def breakable(text: str) -> SafeString:
    """`text` for a list cell that may wrap after `.`, `@`, `_` and `-` (an email, an error code):
    a long one no longer widens its column past the screen."""
    return mark_safe(_BREAK_AFTER.sub(r"\1<wbr>", escape(text)))  # noqa: S308 - escaped above


class ReadOnlyAdminMixin:
    """View permission only: no add, change or delete, whoever asks (superusers included)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ActionsOnlyAdminMixin:
    """Read-only pages whose list still offers actions: no add or delete, and the change permission
    is granted only where Django asks without an object (the list), so it gates the actions (which
    run services) and never a form that would write the row."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request)  # type: ignore[misc]
