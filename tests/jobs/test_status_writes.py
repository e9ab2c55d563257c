"""One module changes a job's status: `jobs/life/status.py`. Any other write of it fails here.

"Where does a job's status change?" has a one-file answer only while no other module writes it:
every move there is a conditional UPDATE that decides which of two racing callers wins (and so
which one refunds). tests/status_writes.py finds every way a job's status can be written.
"""

from __future__ import annotations

from tests.status_writes import ROOT, Subject, status_writes, writes_outside

OWNER = "jobs/life/status.py"
JOB = Subject(model="Job", row_name="job", tables=("jobs", "jobs_job"))


def test_only_the_status_module_writes_a_jobs_status():
    assert writes_outside(OWNER, JOB) == [], "a job's status is written outside jobs/life/status.py"


def test_the_status_module_makes_every_move():
    lines = status_writes((ROOT / OWNER).read_text(), JOB, OWNER)
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
        assert len(status_writes(source, JOB)) == expected, source
