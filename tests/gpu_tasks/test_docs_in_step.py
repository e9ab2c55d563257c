"""What people read about the engines says what the code declares: README's table of AI features
(model, price, GPU and time limit of each type, as `gpu_tasks/types.py` and `jobs/specs.py` say)
and the package map in `gpu_tasks/__init__.py`."""

from __future__ import annotations

import re
from pathlib import Path

import gpu_tasks
from gpu_tasks.types import JOB_TYPES, JobType

README = Path(__file__).resolve().parents[2] / "README.md"


def _feature_rows() -> dict[str, list[str]]:
    """README's "AI features" table: type -> its cells."""
    text = README.read_text()
    table = text[text.index("### AI features"):]
    rows = {}
    for line in table.splitlines()[4:]:  # the heading, a blank line, the header and its rule
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows[cells[0].split(" (")[0]] = cells
    return rows


def _name(model: str) -> str:
    """A model's name without what a parenthesis adds ("ffmpeg (libx264, AAC)" -> "ffmpeg")."""
    return model.split(" (")[0].strip()


def test_readme_names_each_types_model_and_gpu_as_declared() -> None:
    rows = _feature_rows()
    assert set(rows) == {t.value for t in JobType}, "one README row per job type"
    for job_type, spec in JOB_TYPES.items():
        cells = rows[job_type.value]
        assert cells[1].startswith(_name(spec.model)), f"{job_type}: README says {cells[1]!r}, types.py {spec.model!r}"
        assert cells[-2].lower() == spec.gpu.value.lower(), f"{job_type}: GPU"
        assert cells[-1] == f"{spec.time_limit_s} s", f"{job_type}: time limit"


def test_readme_prices_each_type_as_its_spec_does() -> None:
    from jobs.specs import JOB_SPECS

    rows = _feature_rows()
    for job_type, spec in JOB_SPECS.items():
        assert rows[job_type.value][-3] == spec.price.describe().replace(" credits per", " per"), job_type


def test_the_package_map_names_every_engine_module() -> None:
    doc = gpu_tasks.__doc__ or ""
    modules = {ref.split(":")[0].rsplit(".", 1)[1] for spec in JOB_TYPES.values()
               for ref in (spec.local_engine, spec.modal_engine) if ref}
    missing = {m for m in modules if not re.search(rf"\b{m}\b", doc)}
    assert not missing, f"gpu_tasks/__init__.py's map does not name {sorted(missing)}"
