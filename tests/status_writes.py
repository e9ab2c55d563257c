"""Where a model's status is written: the check behind "one module moves a job's status" and
"one module moves a media file's status" (tests/jobs/test_status_writes.py,
tests/media/test_status_writes.py).

It reads every module of the product (not the tests, nor the migrations) for the ways a row's
status can be written:
- a queryset's `update`/`create`/`get_or_create`/`update_or_create` call on the model with `status=`;
- `Model(status=...)`;
- an assignment to `<row>.status` (a name that says it holds such a row), or its
  `save(update_fields=...)` naming `status`;
- raw SQL that updates the model's table's status.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_PRODUCT = {"tests", "bench", "migrations", ".venv", "var", "node_modules", "deploy"}
WRITERS = {"update", "create", "get_or_create", "update_or_create", "bulk_create", "bulk_update"}


@dataclass(frozen=True)
class Subject:
    model: str  # the class name, e.g. "Job"
    row_name: str  # what a variable holding one is called, e.g. "job" (any name containing it)
    tables: tuple[str, ...]  # its tables' names in raw SQL


def product_modules() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        if not NOT_PRODUCT.intersection(path.relative_to(ROOT).parts):
            yield path


def _names_model(node: ast.AST, model: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == model for n in ast.walk(node))


def _is_row_name(node: ast.AST, row_name: str) -> bool:
    return (isinstance(node, ast.Name) and row_name in node.id.lower()) or (
        isinstance(node, ast.Attribute) and node.attr.lower().endswith(row_name))


def status_writes(source: str, subject: Subject, filename: str = "<source>") -> list[int]:
    """Line numbers where `source` writes the status of a `subject` row."""
    found = []
    tables = "|".join(re.escape(table) for table in subject.tables)
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            keywords = {k.arg for k in node.keywords}
            func = node.func
            if "status" in keywords and (
                (isinstance(func, ast.Attribute) and func.attr in WRITERS and _names_model(func, subject.model))
                or (isinstance(func, ast.Name) and func.id == subject.model)
            ):
                found.append(node.lineno)
            if isinstance(func, ast.Attribute) and func.attr == "save" and _is_row_name(func.value, subject.row_name):
                for keyword in node.keywords:
                    if keyword.arg == "update_fields" and "status" in ast.unparse(keyword.value):
                        found.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if (isinstance(element, ast.Attribute) and element.attr == "status"
                            and _is_row_name(element.value, subject.row_name)):
                        found.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            sql = " ".join(node.value.lower().split())
            if re.search(rf"\bupdate ({tables}) set\b((?!\bwhere\b)[^;])*\bstatus\s*=", sql):
                found.append(node.lineno)
    return sorted(set(found))


def writes_outside(owner: str, subject: Subject) -> list[str]:
    """`path:line` of every write of the subject's status in a product module other than `owner`."""
    writes = []
    for path in product_modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel != owner:
            writes += [f"{rel}:{line}" for line in status_writes(path.read_text(), subject, rel)]
    return writes
