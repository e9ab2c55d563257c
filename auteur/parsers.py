"""Request parsers (kept apart from auteur.api: DRF's views module imports parser classes)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions, parsers

from auteur.errors import ApplicationError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus two refusals of input that is not a server error:

    - a body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 before it is read (DRF reads the stream
      itself, so Django's own cap, which guards `request.body`, never applies to it);
    - a body nested deeper than Python's recursion limit is malformed (400), where json.load
      raises RecursionError, which DRF lets through.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        request = (parser_context or {}).get("request")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if request is not None and limit is not None:
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                raise ApplicationError(
                    f"The request body is {length} bytes; the limit is {limit}.",
                    code="payload_too_large", details={"size_bytes": length, "max_bytes": limit},
                )
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the document is nested too deeply.") from None
