"""One module changes a job's status: `jobs/life/status.py`. Any other write of it fails here.

"Where does a job's status change?" has a one-file answer only while no other module writes it:
every move there is a conditional UPDATE that decides which of two racing callers wins (and so
which one refunds). The check reads every module of the product (not the tests, nor the
migrations) for the ways a job's status can be written:
- a queryset's `update`/`create`/`get_or_create`/`update_or_create` call on `Job` with `status=`;
- `Job(status=...)`;
- an assignment to `<job>.status` (a name that says it holds a job), or its `save(update_fields=...)`
  naming `status`;
- raw SQL that updates the jobs table's status.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
OWNER = "jobs/life/status.py"
NOT_PRODUCT = {"tests", "bench", "migrations", ".venv", "var", "node_modules", "deploy"}
WRITERS = {"update", "create", "get_or_create", "update_or_create", "bulk_create", "bulk_update"}


def product_modules() -> Iterator[Path]:
    for path in sorted(ROOT.rglob("*.py")):
        if not NOT_PRODUCT.intersection(path.relative_to(ROOT).parts):
            yield path


def _names_job(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "Job" for n in ast.walk(node))


def _is_job_name(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and "job" in node.id.lower()) or (
        isinstance(node, ast.Attribute) and node.attr.lower().endswith("job"))


def status_writes(source: str, filename: str = "<source>") -> list[int]:
    """Line numbers where `source` writes a job's status."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call):
            keywords = {k.arg for k in node.keywords}
            func = node.func
            if "status" in keywords and (
                (isinstance(func, ast.Attribute) and func.attr in WRITERS and _names_job(func))
                or (isinstance(func, ast.Name) and func.id == "Job")
            ):
                found.append(node.lineno)
            if isinstance(func, ast.Attribute) and func.attr == "save" and _is_job_name(func.value):
                for keyword in node.keywords:
                    if keyword.arg == "update_fields" and "status" in ast.unparse(keyword.value):
                        found.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(element, ast.Attribute) and element.attr == "status" and _is_job_name(element.value):
                        found.append(node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            sql = " ".join(node.value.lower().split())
            if re.search(r"\bupdate jobs(_job)? set\b((?!\bwhere\b)[^;])*\bstatus\s*=", sql):
                found.append(node.lineno)
    return sorted(set(found))


def test_only_the_status_module_writes_a_jobs_status():
    writes = []
    for path in product_modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel == OWNER:
            continue
        writes += [f"{rel}:{line}" for line in status_writes(path.read_text(), rel)]
    assert writes == [], "a job's status is written outside jobs/life/status.py"


def test_the_status_module_makes_every_move():
    lines = status_writes((ROOT / OWNER).read_text(), OWNER)
    # claim (to queued, to processing), complete, fail, cancel, and the in-memory copies kept in step.
    assert len(lines) >= 5


def test_the_check_finds_each_way_of_writing_it():
    cases = {
        "Job.objects.filter(pk=1).update(status='failed')": 1,
        "Job.objects.create(user=u, status='completed')": 1,
        "Job.objects.select_for_update().filter(pk=1).update(progress=3, status=s)": 1,
        "Job(status='processing').save()": 1,
        "job.status = 'failed'": 1,
        "job.status, job.progress = 'failed', 1": 1,
        "self.job.status = 'canceled'": 1,
        "retry_of.save(update_fields=['status'])": 0,  # not a name that says it is a job
        "old_job.save(update_fields=['status', 'updated_at'])": 1,
        "cursor.execute('UPDATE jobs_job SET status = %s WHERE id = %s', [s, i])": 1,
        "cursor.execute('WITH m AS (UPDATE jobs SET updated_at = now(), status = %s WHERE id = %s) SELECT 1')": 1,
        "cursor.execute('UPDATE jobs SET progress = %s WHERE id = %s', [p, i])": 0,
        "cursor.execute(\"UPDATE jobs SET progress = 1 WHERE status = 'processing'\")": 0,
        # Not writes of a job's status:
        "Job.objects.filter(status='failed').count()": 0,
        "MediaFile.objects.filter(pk=1).update(status='ready')": 0,
        "subscription.status = 'active'": 0,
        "body = {'status': job.status}": 0,
    }
    for source, expected in cases.items():
        assert len(status_writes(source)) == expected, source
