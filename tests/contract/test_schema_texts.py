"""What a reader of the API's documentation (Swagger UI, the generated client) is told: every
operation has a summary, and no description is meant for someone else: no operator setting, no
command, and never the notes a base view keeps for this code's readers."""

from __future__ import annotations

import re

from tests.contract.support import operations, served_schema

FOR_OPERATORS = re.compile(r"\b(AUTEUR|DJANGO|CELERY)_[A-Z_]+\b|manage\.py")


def test_every_operation_has_a_summary():
    missing = [f"{method} {path}" for method, path, op in operations(served_schema()) if not op.get("summary")]
    assert missing == []


def test_no_description_names_an_operators_setting_or_a_base_views_notes():
    from auteur.core.api import ApiView

    base = " ".join((ApiView.__doc__ or "").split())[:60]
    for method, path, op in operations(served_schema()):
        text = " ".join(str(op.get("description", "")).split())
        assert not FOR_OPERATORS.search(text), (method, path, FOR_OPERATORS.findall(text))
        assert base not in text and "token guessing" not in text, (method, path)
