"""A client's JSON checked against mongoengine field definitions, with the path of every problem.

Generic: it knows field types (int, float, string, bool, date-time, dict, list, embedded
document) and their bounds, not what an EDL means; ``projects.edl.validation`` applies the EDL's
own rules on top. A value is checked without building a mongoengine object (that would cost more
than the whole check), and every problem is collected, not only the first.

``compiled_check`` is the fast path of the same checks: the field definitions compiled into
msgspec types (once per document class), which check a valid document in C at a tenth of the cost
and answer its normalised form, or answer None at the first problem; ``check_document`` then
finds and words every problem. For JSON values (what the API's reader makes, and an import's) the
two give the same answer: each field's type, bounds, length, choices and pattern become the same
constraints, and what msgspec cannot express (a date-time's forms, an effect's plain-JSON rules) is
checked by the same Python functions afterwards (tests/projects/test_edl_compiled_checks.py).
A server-side caller's Python values that JSON lacks are taken as msgspec converts them (a tuple
as a list, a Decimal as a float, an int enum as its int) or, if it cannot, judged by the Python
checks.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    EmbeddedDocumentField,
    FloatField,
    IntField,
    ListField,
    StringField,
)
from mongoengine.base import BaseField

from projects.edl.documents import UUID_RE, ms_precision
from projects.errors import EdlInvalid

MAX_ERRORS = 200  # a response listing every problem of a broken 5,000-clip timeline is useless
MAX_EFFECT_BYTES = 4096
MAX_EFFECT_DEPTH = 8


@dataclass
class Errors:
    """Every problem found, each with its path; raised together as one EdlInvalid (422)."""

    items: list[dict[str, str]] = field(default_factory=list)
    truncated: bool = False

    def add(self, path: str, message: str) -> None:
        if len(self.items) < MAX_ERRORS:
            self.items.append({"path": path, "message": message})
        else:
            self.truncated = True

    def raise_if_any(self) -> None:
        if not self.items:
            return
        details: dict[str, Any] = {"errors": self.items}
        if self.truncated:
            details["truncated"] = True
        count = len(self.items)
        raise EdlInvalid(
            f"The timeline has {count}{'+' if self.truncated else ''} invalid field{'s' if count > 1 else ''}.",
            details=details,
        )


ROOT = "$"  # the path of the document itself

# Paths are built only for errors: a valid 2,000-clip timeline has ~40,000 values to check.
Key = str | int


def _path(parent: str, key: Key) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent and parent != ROOT else key


def _check_bounds(value: float, fld: IntField | FloatField, parent: str, key: Key, errors: Errors) -> bool:
    if fld.min_value is not None and value < fld.min_value:
        errors.add(_path(parent, key), f"Must be at least {fld.min_value}.")
        return False
    if fld.max_value is not None and value > fld.max_value:
        errors.add(_path(parent, key), f"Must be at most {fld.max_value}.")
        return False
    return True


def _check_int(fld: IntField, value: Any, parent: str, key: Key, errors: Errors) -> int | None:
    if type(value) is not int:  # not isinstance: True and False are ints to Python
        errors.add(_path(parent, key), "Must be an integer.")
        return None
    return value if _check_bounds(value, fld, parent, key, errors) else None


def _check_float(fld: FloatField, value: Any, parent: str, key: Key, errors: Errors) -> float | None:
    # An int is finite, however long (math.isfinite cannot take one past a float's range).
    if type(value) not in (int, float) or (type(value) is float and not math.isfinite(value)):
        errors.add(_path(parent, key), "Must be a number.")
        return None
    return float(value) if _check_bounds(value, fld, parent, key, errors) else None


def _check_str(fld: StringField, value: Any, parent: str, key: Key, errors: Errors) -> str | None:
    if not isinstance(value, str):
        message = "Must be a string."
    elif fld.min_length is not None and len(value) < fld.min_length:
        message = "May not be empty." if fld.min_length == 1 else f"Must be at least {fld.min_length} long."
    elif fld.max_length is not None and len(value) > fld.max_length:
        message = f"Must be at most {fld.max_length} characters."
    elif fld.choices and value not in fld.choices:
        message = f"Must be one of: {', '.join(fld.choices)}."
    elif fld.regex is not None and fld.regex.match(value) is None:
        message = "Must be a UUID." if fld.regex.pattern == UUID_RE else "Has an invalid format."
    else:
        return value
    errors.add(_path(parent, key), message)
    return None


def _check_bool(fld: BooleanField, value: Any, parent: str, key: Key, errors: Errors) -> bool | None:
    if not isinstance(value, bool):
        errors.add(_path(parent, key), "Must be true or false.")
        return None
    return value


def _check_datetime(fld: DateTimeField, value: Any, parent: str, key: Key, errors: Errors) -> datetime | None:
    parsed: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
    if parsed is None or parsed.tzinfo is None:
        errors.add(_path(parent, key), "Must be an ISO 8601 date-time with a time zone, e.g. 2026-01-31T12:00:00Z.")
        return None
    return ms_precision(parsed.astimezone(UTC))  # what MongoDB stores: read back exactly


def _json_safe(value: Any, depth: int = 0) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if depth >= MAX_EFFECT_DEPTH:
        return False
    if isinstance(value, list):
        return all(_json_safe(v, depth + 1) for v in value)
    if isinstance(value, dict):
        # "$"-prefixed and dotted keys are operators and paths to MongoDB, never data.
        return all(
            isinstance(k, str) and k and not k.startswith("$") and "." not in k and "\x00" not in k
            and _json_safe(v, depth + 1)
            for k, v in value.items()
        )
    return False


def _check_dict(fld: DictField, value: Any, parent: str, key: Key, errors: Errors) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        message = "Must be an object."
    elif not _json_safe(value):
        message = (
            f"Must be plain JSON nested at most {MAX_EFFECT_DEPTH} deep, with keys that are non-empty, "
            "do not start with '$' and contain no '.'."
        )
    elif len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_EFFECT_BYTES:
        message = f"Must be at most {MAX_EFFECT_BYTES} bytes of JSON."
    else:
        return value
    errors.add(_path(parent, key), message)
    return None


def _check_list(fld: ListField, value: Any, parent: str, key: Key, errors: Errors) -> list[Any] | None:
    if not isinstance(value, list):
        errors.add(_path(parent, key), "Must be a list.")
        return None
    if fld.max_length is not None and len(value) > fld.max_length:
        errors.add(_path(parent, key), f"Must have at most {fld.max_length} items.")
        return None
    if not value:
        return []
    path = _path(parent, key)
    inner = fld.field
    if isinstance(inner, EmbeddedDocumentField):
        # A list of documents (clips, words): each checked directly, its path built only here.
        doc_cls = inner.document_type
        return [check_document(doc_cls, item, f"{path}[{i}]", errors) if item is not None
                else _check_value(inner, item, path, i, errors) for i, item in enumerate(value)]
    return [_check_value(inner, item, path, i, errors) for i, item in enumerate(value)]


def _check_embedded(
    fld: EmbeddedDocumentField, value: Any, parent: str, key: Key, errors: Errors
) -> dict[str, Any] | None:
    return check_document(fld.document_type, value, _path(parent, key), errors)


_CHECKS: list[tuple[type[BaseField], Callable[..., Any]]] = [
    # Order matters where classes inherit: EmbeddedDocumentListField is a ListField.
    (EmbeddedDocumentField, _check_embedded),
    (ListField, _check_list),
    (IntField, _check_int),
    (FloatField, _check_float),
    (StringField, _check_str),
    (BooleanField, _check_bool),
    (DateTimeField, _check_datetime),
    (DictField, _check_dict),
]


def _check_for(fld: BaseField) -> Callable[..., Any]:
    check = next((fn for cls, fn in _CHECKS if isinstance(fld, cls)), None)
    if check is None:  # a field type added to projects.edl.documents without a check here
        raise TypeError(f"no EDL check for {type(fld).__name__}")
    return check


_CHECK_BY_FIELD: dict[int, Callable[..., Any]] = {}


def _check_value(fld: BaseField, value: Any, parent: str, key: Key, errors: Errors) -> Any:
    if value is None:
        if not fld.null:
            errors.add(_path(parent, key), "May not be null.")
        return None
    check = _CHECK_BY_FIELD.get(id(fld))
    if check is None:
        check = _CHECK_BY_FIELD[id(fld)] = _check_for(fld)
    return check(fld, value, parent, key, errors)


# Fast paths for the common valid values (most of a timeline is ints, short strings and flags);
# anything else goes through the field's full check, which also words the error.
_SLOW, _INT, _STR, _BOOL, _FLOAT = range(5)


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    fld: BaseField
    check: Callable[..., Any]
    required: bool
    null: bool
    default: Any
    kind: int = _SLOW
    low: float = -math.inf  # _INT, _FLOAT: value bounds; _STR: length bounds
    high: float = math.inf


def _spec(name: str, fld: BaseField) -> _FieldSpec:
    kind, low, high = _SLOW, -math.inf, math.inf
    if isinstance(fld, IntField):
        kind = _INT
        low = fld.min_value if fld.min_value is not None else -math.inf
        high = fld.max_value if fld.max_value is not None else math.inf
    elif isinstance(fld, StringField) and not fld.choices and fld.regex is None:
        kind = _STR
        low = fld.min_length or 0
        high = fld.max_length if fld.max_length is not None else math.inf
    elif isinstance(fld, BooleanField):
        kind = _BOOL
    elif isinstance(fld, FloatField):
        kind = _FLOAT
        low = fld.min_value if fld.min_value is not None else -math.inf
        high = fld.max_value if fld.max_value is not None else math.inf
    return _FieldSpec(name, fld, _check_for(fld), bool(fld.required), bool(fld.null), fld.default, kind, low, high)


_SPECS: dict[tuple[type, tuple[str, ...] | None], tuple[_FieldSpec, ...]] = {}
_ALLOWED: dict[tuple[type, tuple[str, ...] | None], frozenset[str]] = {}


def _specs(doc_cls: type, names: tuple[str, ...] | None) -> tuple[_FieldSpec, ...]:
    specs = _SPECS.get((doc_cls, names))
    if specs is None:
        fields = doc_cls._fields  # type: ignore[attr-defined]
        specs = _SPECS[(doc_cls, names)] = tuple(
            _spec(name, fields[name]) for name in (names if names is not None else tuple(fields))
        )
        _ALLOWED[(doc_cls, names)] = frozenset(spec.name for spec in specs)
    return specs


def check_document(
    doc_cls: type, value: Any, path: str, errors: Errors, *, names: tuple[str, ...] | None = None,
    ignored: frozenset[str] = frozenset(),
) -> dict[str, Any] | None:
    """``value`` against the fields of a mongoengine (embedded) document class.

    Unknown keys are refused, required ones must be present, absent optional ones get the
    field's default. Returns the normalised dict (None in place of each invalid value).
    """
    if not isinstance(value, dict):
        errors.add(path, "Must be an object.")
        return None
    specs = _specs(doc_cls, names)
    unknown = value.keys() - _ALLOWED[(doc_cls, names)] - ignored
    for k in sorted(unknown, key=str):
        errors.add(_path(path, str(k)), "Unknown field.")
    out: dict[str, Any] = {}
    for spec in specs:
        name = spec.name
        if name in value:
            item = value[name]
            kind = spec.kind
            if (
                (kind == _INT and type(item) is int and spec.low <= item <= spec.high)
                or (kind == _STR and type(item) is str and spec.low <= len(item) <= spec.high)
                or (kind == _BOOL and type(item) is bool)
                or (kind == _FLOAT and type(item) is float and spec.low <= item <= spec.high and math.isfinite(item))
            ):
                out[name] = item
            elif item is None:
                if not spec.null:
                    errors.add(_path(path, name), "May not be null.")
                out[name] = None
            else:
                out[name] = spec.check(spec.fld, item, path, name, errors)
        elif spec.required:
            errors.add(_path(path, name), "This field is required.")
            out[name] = None
        else:
            default = spec.default
            out[name] = default() if callable(default) else default
    return out


# ----------------------------------------------------------------------------- compiled


@dataclass(frozen=True)
class _Compiled:
    """A document class compiled: its msgspec type (a Struct), and the fields whose values are
    checked in Python after msgspec's pass: (field name, check answering the normalised value or
    _INVALID, whether the field is a list, whose empty value msgspec has checked whole)."""

    type: Any
    post: tuple[tuple[str, Callable[[Any], Any], bool], ...]


_COMPILED: dict[tuple[type, tuple[str, ...] | None, frozenset[str]], _Compiled] = {}
_INVALID = object()  # a post check's answer for a value check_document would refuse


def _value_check(fld: BaseField) -> Callable[[Any], Any]:
    """``fld``'s full check as a function of the value: its normalised value, or _INVALID."""
    check = _check_for(fld)

    def run(value: Any) -> Any:
        scratch = Errors()
        checked = check(fld, value, ROOT, "", scratch)
        return _INVALID if scratch.items else checked

    return run


def _items_check(item_check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run(values: list[Any]) -> Any:
        checked = [item_check(v) for v in values]
        return _INVALID if any(v is _INVALID for v in checked) else checked

    return run


def _struct_check(compiled: _Compiled) -> Callable[[Any], Any]:
    def run(struct: Any) -> Any:
        return struct if _post(compiled, struct) else _INVALID

    return run


def _structs_check(compiled: _Compiled) -> Callable[[Any], Any]:
    """A list of Structs (a track's clips): each checked in place, so the list is its own
    normalised value. A None item fails here (no attribute) and goes to check_document's path."""

    def run(structs: list[Any]) -> Any:
        for struct in structs:
            if not _post(compiled, struct):
                return _INVALID
        return structs

    return run


def _post(compiled: _Compiled, struct: Any) -> bool:
    """The Python checks of a converted Struct's values (the values as the client sent them, which
    msgspec passed through), each replaced by its normalised form; False at the first problem."""
    for name, check, is_list in compiled.post:
        value = getattr(struct, name)
        # An empty list of a list field needs nothing more (most clips: no effects); in a field of
        # another type (a date-time, a plain-JSON dict) it is a value like any other, to check.
        if value is not None and not (is_list and type(value) is list and not value):
            checked = check(value)
            if checked is _INVALID:
                return False
            setattr(struct, name, checked)
    return True


def _compiled_field(fld: BaseField) -> tuple[Any, Callable[[Any], Any] | None]:
    """(the msgspec type of ``fld``'s non-null values, its post check or None)."""
    if isinstance(fld, EmbeddedDocumentField):
        inner = _compile(fld.document_type, None, frozenset())
        return inner.type, (_struct_check(inner) if inner.post else None)
    if isinstance(fld, ListField):
        if isinstance(fld.field, EmbeddedDocumentField):
            inner = _compile(fld.field.document_type, None, frozenset())
            item_type, items_post = inner.type, (_structs_check(inner) if inner.post else None)
        else:
            item_type, item_post = _compiled_field(fld.field)
            items_post = None if item_post is None else _items_check(item_post)
        if fld.field.null:
            item_type = item_type | None
        meta = msgspec.Meta(max_length=fld.max_length) if fld.max_length is not None else msgspec.Meta()
        return Annotated[list[item_type], meta], items_post  # type: ignore[valid-type]
    if isinstance(fld, IntField):
        return Annotated[int, msgspec.Meta(ge=fld.min_value, le=fld.max_value)], None
    if isinstance(fld, FloatField):
        # Bounds always: a comparison refuses NaN and the infinities, as math.isfinite does.
        low = fld.min_value if fld.min_value is not None else -sys.float_info.max
        high = fld.max_value if fld.max_value is not None else sys.float_info.max
        return Annotated[float, msgspec.Meta(ge=low, le=high)], None
    if isinstance(fld, BooleanField):
        return bool, None
    if isinstance(fld, StringField):
        if fld.choices:
            allowed = tuple(c for c in fld.choices if _check_str(fld, c, ROOT, "", Errors()) is not None)
            return Literal[allowed], None
        if fld.regex is not None and fld.regex.flags & ~re.UNICODE:  # flags msgspec's pattern lacks
            return str, _value_check(fld)
        # re.match(p) is re.search("^(?:p)") without MULTILINE: msgspec's reading of a pattern.
        pattern = None if fld.regex is None else f"^(?:{fld.regex.pattern})"
        meta = msgspec.Meta(pattern=pattern, min_length=fld.min_length, max_length=fld.max_length)
        return Annotated[str, meta], None
    # Date-times (every form datetime.fromisoformat reads) and plain-JSON dicts: checked in Python.
    return Any, _value_check(fld)


def _compile(doc_cls: type, names: tuple[str, ...] | None, ignored: frozenset[str]) -> _Compiled:
    key = (doc_cls, names, ignored)
    compiled = _COMPILED.get(key)
    if compiled is not None:
        return compiled
    fields: list[tuple[str, Any, Any]] = []
    post: list[tuple[str, Callable[[Any], Any], bool]] = []
    for spec in _specs(doc_cls, names):
        value_type, check = _compiled_field(spec.fld)
        if spec.null:
            value_type = value_type | None
        if spec.required:
            fields.append((spec.name, value_type, msgspec.NODEFAULT))
        elif callable(spec.default):
            fields.append((spec.name, value_type, msgspec.field(default_factory=spec.default)))
        else:
            fields.append((spec.name, value_type, spec.default))
        if check is not None:
            post.append((spec.name, check, isinstance(spec.fld, ListField)))
    # Ignored names are taken in any form, and dropped.
    fields += [(name, Any, None) for name in sorted(ignored)]
    struct = msgspec.defstruct(f"Compiled{doc_cls.__name__}", fields, kw_only=True, forbid_unknown_fields=True)
    compiled = _COMPILED[key] = _Compiled(type=struct, post=tuple(post))
    return compiled


def compiled_check(
    doc_cls: type, value: Any, *, names: tuple[str, ...] | None = None, ignored: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """What ``check_document`` returns for a ``value`` in which it finds no problem, or None when
    it would find one (call it then, for the problems)."""
    compiled = _compile(doc_cls, names, ignored)
    try:
        converted = msgspec.convert(value, compiled.type)
        if not _post(compiled, converted):
            return None
        for name in ignored:
            setattr(converted, name, None)
        doc: dict[str, Any] = msgspec.to_builtins(converted, builtin_types=(datetime,))
    except Exception:  # noqa: BLE001 - anything it cannot take (a str subclass, say) is the Python checks' to judge
        return None
    for name in ignored:
        del doc[name]
    return doc
