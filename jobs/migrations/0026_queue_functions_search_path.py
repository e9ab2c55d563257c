"""The queue estimate's two functions (0005) run with search_path pg_catalog, pg_temp and name their
table by its schema, as every function that runs as its owner does: nothing a session creates in a
schema it may write stands in for `jobs`, an operator or a function they use. Their bodies, results
and grants are unchanged (CREATE OR REPLACE keeps the grants)."""

from django.db import migrations

QUEUE_FUNCTIONS = """
CREATE OR REPLACE FUNCTION public.auteur_waiting_jobs_before(types text[], before timestamptz) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT count(*) FROM public.jobs
    WHERE status IN ('pending', 'queued') AND type = ANY(types) AND created_at < before
$$;

CREATE OR REPLACE FUNCTION public.auteur_median_processing_ms(job_type text, sample integer)
RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY h.ms) FROM (
        SELECT processing_time_ms AS ms FROM public.jobs
        WHERE status = 'completed' AND type = job_type AND processing_time_ms IS NOT NULL
        ORDER BY completed_at DESC LIMIT sample
    ) h
$$;
"""

# As 0005 made them.
QUEUE_FUNCTIONS_BEFORE = """
CREATE OR REPLACE FUNCTION public.auteur_waiting_jobs_before(types text[], before timestamptz) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT count(*) FROM jobs
    WHERE status IN ('pending', 'queued') AND type = ANY(types) AND created_at < before
$$;

CREATE OR REPLACE FUNCTION public.auteur_median_processing_ms(job_type text, sample integer)
RETURNS double precision
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY h.ms) FROM (
        SELECT processing_time_ms AS ms FROM jobs
        WHERE status = 'completed' AND type = job_type AND processing_time_ms IS NOT NULL
        ORDER BY completed_at DESC LIMIT sample
    ) h
$$;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0025_traceparent"),
    ]

    operations = [
        migrations.RunSQL(QUEUE_FUNCTIONS, QUEUE_FUNCTIONS_BEFORE),
    ]
