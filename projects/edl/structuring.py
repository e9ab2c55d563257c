"""The data migration of ``edl`` documents to their structured form (projects/migrations/0009).

Documents of every earlier vintage are rewritten as the store writes them now (tracks and
transcript as subdocuments, ``media_ids`` computed): those that hold their content packed
(``content_z``), and those written before packing or before ``media_ids`` (content as fields, no
``media_ids``). A structured document is left alone.

Each document is rewritten by one ``replace_one`` filtered on its id, its version and its old
form: a save that lands between the read and the write has made a new version (already
structured, or packed by a process of the previous release during a rolling deploy), the write
matches nothing, and the document is read again; a save is never lost. The content of a version
is never changed (the same version, the same content, another form), so an editor that holds that
version saves over it as before. Documents are read in ``_id`` order, ``batch`` at a time, each
batch a fresh query of what is still to do: run again after a crash part-way, the migration
carries on with what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from projects.edl.documents import PACKED, stored_content, stored_form
from projects.edl.store import edl_collection, store_errors

logger = logging.getLogger(__name__)

BATCH = 200
# A document saved this often while the migration tries it is left for the next run (counted).
ATTEMPTS = 5


def unstructured_filter() -> dict[str, Any]:
    """The documents still to rewrite: packed, or without media_ids."""
    return {"$or": [{PACKED: {"$exists": True}}, {"media_ids": {"$exists": False}}]}


@dataclass
class StructuringReport:
    converted: int = 0
    skipped: int = 0  # saved concurrently on every attempt: left for the next run
    batches: int = 0


def structure_one(raw: dict[str, Any]) -> bool:
    """Rewrite one stored document (as read) in the structured form, guarded by its version and
    its old form. False when it changed since it was read (nothing written)."""
    guard: dict[str, Any] = {"_id": raw["_id"], "version": raw["version"]}
    guard.update({PACKED: {"$exists": True}} if PACKED in raw else {"media_ids": {"$exists": False}})
    structured = stored_form(stored_content(raw))
    return bool(edl_collection().replace_one(guard, structured).matched_count)


def edl_structure_all(*, batch: int = BATCH, max_batches: int | None = None) -> StructuringReport:
    """Rewrite every document still in an earlier form; ``max_batches`` stops early (tests of a
    run cut short). Idempotent: what is structured already is not read."""
    report = StructuringReport()
    after: Any = None
    with store_errors():
        edls = edl_collection()
        while max_batches is None or report.batches < max_batches:
            query = unstructured_filter()
            if after is not None:
                query = {"$and": [query, {"_id": {"$gt": after}}]}
            # A batch is its ids; each document is read on its own, so the memory a run holds is
            # one timeline's (up to the EDL size limit), whatever the batch size.
            ids = [row["_id"] for row in edls.find(query, {"_id": 1}).sort("_id", 1).limit(batch)]
            if not ids:
                break
            report.batches += 1
            for doc_id in ids:
                after = doc_id
                raw = edls.find_one({"_id": doc_id, **unstructured_filter()})
                if raw is None or _structure_with_retries(raw):  # None: structured or deleted meanwhile
                    report.converted += raw is not None
                else:
                    report.skipped += 1
    logger.info("EDL documents structured", extra={"converted": report.converted, "skipped": report.skipped})
    return report


def _structure_with_retries(raw: dict[str, Any]) -> bool:
    for _ in range(ATTEMPTS):
        if structure_one(raw):
            return True
        fresh = edl_collection().find_one({"_id": raw["_id"], **unstructured_filter()})
        if fresh is None:  # structured by a save meanwhile, or deleted: nothing left to do
            return True
        raw = fresh
    return False
