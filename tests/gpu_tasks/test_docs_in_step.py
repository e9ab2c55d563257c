"""What people read about the engines says what the code declares: the package map in
`gpu_tasks/__init__.py`. (The table of AI features is generated from the types and specs, and
tests/docs/test_docs_site.py checks the built page.)"""

from __future__ import annotations

import re

import gpu_tasks
from gpu_tasks.types import JOB_TYPES


def test_the_package_map_names_every_engine_module() -> None:
    doc = gpu_tasks.__doc__ or ""
    modules = {ref.split(":")[0].rsplit(".", 1)[1] for spec in JOB_TYPES.values()
               for ref in (spec.local_engine, spec.modal_engine) if ref}
    missing = {m for m in modules if not re.search(rf"\b{m}\b", doc)}
    assert not missing, f"gpu_tasks/__init__.py's map does not name {sorted(missing)}"
