"""Request parsers (kept apart from auteur.core.api: DRF's views module imports parser classes)."""

from __future__ import annotations

import io
from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers

from gpu_tasks.bounded import ShapeError, json_brackets


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with its work bounded before anything is built: a body with more objects
    and arrays than AUTEUR_JSON_MAX_CONTAINERS (counted by their brackets, at the speed of a byte
    search) is refused, and one nested deeper than Python's recursion limit is malformed input
    (json.load stops there, raising RecursionError, which DRF lets through); both are a 400."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read() if stream is not None else b""
        try:
            json_brackets(body, max_containers=settings.AUTEUR_JSON_MAX_CONTAINERS)
        except ShapeError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the document is nested too deeply.") from None
