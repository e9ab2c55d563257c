"""The shape of a document a user sent, checked before a library builds objects from it.

A few kilobytes of XML or JSON can ask a reader for unbounded work: nesting deeper than a
recursive reader's stack, entity declarations that expand into gigabytes, more elements than any
real document holds. These checks read a document once, linearly, and refuse it (`ShapeError`,
naming the bound and where it was passed) as soon as it passes a bound, so nothing deeper or larger
is ever built:

- `xml_tree`: the element tree of an XML document, built as the document streams in and given up
  at the first element past `max_depth` or `max_elements`; entity declarations are refused.
- `json_brackets`: a JSON text's objects and arrays, counted at the speed of a byte search before
  anything reads it; `json_value` reads it then, stopping at `max_depth` levels before it builds
  the next, so that a reader (Python's, or a C++ one) is given only a bounded document.

What references in a document expand to (a sequence used by another, a compound clip by its
parent) depends on the format: its reader counts that over the tree these give it, memoised over
the reference graph. A reader that could still run away runs in a confined child
(gpu_tasks/confined.py). This module imports nothing of the project.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_CHUNK = 64 * 1024
_ENTITY = re.compile(r"<!ENTITY", re.IGNORECASE)


@dataclass
class ShapeError(Exception):
    """A document past one of its bounds (or malformed where the check reads it)."""

    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


def xml_tree(text: str, *, max_depth: int, max_elements: int) -> ET.Element:
    """The root element of `text`, built element by element and refused at the first one past
    `max_depth` (nesting) or `max_elements` (in all); entity declarations are refused before
    anything is parsed, since expanding them is how a small file grows into gigabytes."""
    if _ENTITY.search(text):
        raise ShapeError("XML entity declarations are not accepted.", {"bound": "entities"})
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("start", "end"))
    depth = elements = 0
    root: ET.Element | None = None
    try:
        for at in range(0, len(text), _CHUNK):
            parser.feed(text[at : at + _CHUNK])
            for event, element in parser.read_events():  # type: ignore[misc]  # (event, element) for these events
                if event == "end":
                    depth -= 1
                    continue
                root = element if root is None else root  # type: ignore[assignment]
                depth += 1
                elements += 1
                if depth > max_depth:
                    raise ShapeError(f"The document nests elements deeper than {max_depth} levels.",
                                     {"bound": "depth", "max": max_depth})
                if elements > max_elements:
                    raise ShapeError(f"The document holds more than {max_elements} elements.",
                                     {"bound": "elements", "max": max_elements})
        parser.close()
    except ET.ParseError as exc:
        raise ShapeError(f"The document is not well-formed XML: {exc}", {"bound": "syntax"}) from None
    if root is None:
        raise ShapeError("The document holds no element.", {"bound": "syntax"})
    return root


def json_brackets(data: str | bytes, *, max_containers: int) -> None:
    """Refuse a JSON text with more than `max_containers` objects and arrays, counted by their
    opening brackets at the speed of a byte search (a bracket inside a string counts too: an upper
    bound, which no real document comes near)."""
    text = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    opens = text.count(b"[") + text.count(b"{")
    if opens > max_containers:
        raise ShapeError(f"The document holds more than {max_containers} objects and arrays.",
                         {"bound": "containers", "max": max_containers})


@contextlib.contextmanager
def _recursion_allowance(levels: int) -> Iterator[None]:
    """The interpreter's recursion limit set to `levels` beyond the current depth, for one call:
    Python's JSON reader counts its nesting against it and stops there, before it builds the next
    level. The limit is the process's: only for a single-threaded process (a confined child)."""
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + levels)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def json_value(text: str, *, max_depth: int, max_containers: int) -> Any:
    """The value of a JSON text, refused past `max_containers` objects and arrays before it is read,
    and past `max_depth` levels while it is read (never deeper). For a single-threaded process only
    (`_recursion_allowance`): a request's body is read by the API's parser instead."""
    json_brackets(text, max_containers=max_containers)
    try:
        with _recursion_allowance(max_depth + _READER_FRAMES):
            return json.loads(text)
    except RecursionError:
        raise ShapeError(f"The document nests deeper than {max_depth} levels.",
                         {"bound": "depth", "max": max_depth}) from None
    except ValueError as exc:
        raise ShapeError(f"The document is not JSON: {str(exc)[:200]}", {"bound": "syntax"}) from None


# Frames of json.loads itself between the caller and the first level of the document.
_READER_FRAMES = 2
