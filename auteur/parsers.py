"""Request parsers (kept apart from auteur.api: DRF's views module imports parser classes)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus: a body nested deeper than Python's recursion limit is malformed
    input (400), not a server error (json.load raises RecursionError, which DRF lets through)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the document is nested too deeply.") from None
