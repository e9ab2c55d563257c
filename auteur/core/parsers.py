"""Request parsers (kept apart from auteur.core.api: DRF's views module imports parser classes)."""

from __future__ import annotations

import codecs
from typing import Any

import msgspec
from django.conf import settings
from rest_framework import exceptions, parsers

from gpu_tasks.bounded import ShapeError, json_brackets


class JSONParser(parsers.JSONParser):
    """A JSON body read with its work bounded before anything is built: one with more objects and
    arrays than AUTEUR_JSON_MAX_CONTAINERS (counted by their brackets, at the speed of a byte
    search) is refused, and one nested deeper than the reader's recursion limit is malformed input;
    both are a 400.

    UTF-8 bodies (JSON's own encoding, and every client's) are read by msgspec, in C, at about twice
    the speed of the standard library, and as strictly as DRF's reader: no NaN or Infinity, no
    number out of a float's range, no control character in a string, nothing after the value. It
    also refuses an escaped lone surrogate (``"\\ud800"``), which Python would read into a string
    that no UTF-8 encoder (Postgres', the JSON writer's) can write. A body declared in another
    charset is decoded as declared and then read the same way."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read() if stream is not None else b""
        try:
            json_brackets(body, max_containers=settings.AUTEUR_JSON_MAX_CONTAINERS)
        except ShapeError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            if codecs.lookup(encoding).name != "utf-8":  # read as declared, then as any other body
                body = body.decode(encoding).encode("utf-8")
            return msgspec.json.decode(body)
        except LookupError:
            raise exceptions.ParseError(f"JSON parse error - unknown charset {encoding[:40]!r}.") from None
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - the document is nested too deeply.") from None
        except (msgspec.DecodeError, UnicodeError) as exc:  # ValidationError is a DecodeError
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
