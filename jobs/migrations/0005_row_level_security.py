"""Row-level security on the jobs app's tables: a session as auteur_api sees only its user's rows (auteur/core/rls.py)."""

from django.db import migrations

from auteur.core.rls import owner_policy, parent_policy

# What a waiting job's estimate (jobs/selectors/queue.py) needs of every user's jobs: a count and a
# median, nothing of any one job. They run as their owner (SECURITY DEFINER), which the policies
# do not restrict; search_path is pinned so that a caller's objects cannot stand in for these.
QUEUE_FUNCTIONS = """
CREATE FUNCTION auteur_waiting_jobs_before(types text[], before timestamptz) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT count(*) FROM jobs
    WHERE status IN ('pending', 'queued') AND type = ANY(types) AND created_at < before
$$;

CREATE FUNCTION auteur_median_processing_ms(job_type text, sample integer) RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY h.ms) FROM (
        SELECT processing_time_ms AS ms FROM jobs
        WHERE status = 'completed' AND type = job_type AND processing_time_ms IS NOT NULL
        ORDER BY completed_at DESC LIMIT sample
    ) h
$$;

REVOKE ALL ON FUNCTION auteur_waiting_jobs_before(text[], timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION auteur_median_processing_ms(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auteur_waiting_jobs_before(text[], timestamptz) TO auteur_api;
GRANT EXECUTE ON FUNCTION auteur_median_processing_ms(text, integer) TO auteur_api;
"""

QUEUE_FUNCTIONS_REVERSE = """
DROP FUNCTION auteur_waiting_jobs_before(text[], timestamptz);
DROP FUNCTION auteur_median_processing_ms(text, integer);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0003_api_role"),
        ("jobs", "0004_retention_indexes"),
    ]

    operations = [
        migrations.RunSQL(*owner_policy("jobs")),
        migrations.RunSQL(*parent_policy("job_events", "job_id", "jobs")),
        migrations.RunSQL(*owner_policy("job_idempotency_keys")),
        migrations.RunSQL(QUEUE_FUNCTIONS, QUEUE_FUNCTIONS_REVERSE),
    ]
