"""An API session changes an ended job's status and refund no more.

The API's role may UPDATE a job's state (its cancels write it), and the ledger refunds an API
session's job only by what its ended row records (credits/migrations/0010_ledger_functions.py). Without
this, an injected statement could write that record itself: mark its completed job canceled with its
whole cost as its refund and then refund it, raise the refund of a job canceled late (refunded 0,
so no refund entry stands in the way), or move a failed and refunded job back to queued to run it
again for free. So, for an API session, a job that has ended (completed, failed, canceled, aborted)
keeps its status, its refund and its refunded flag, and no job records a refund above its cost. The
moves the API makes (a cancel, a bulk cancel, a completion from the cache) end an active job, its
refund recorded in the same UPDATE. Workers, the admin and management commands (the owner's login)
are not asked: every move of theirs is a conditional UPDATE from an active status anyway.
"""

from django.db import migrations

from auteur.core.rls import API_ROLE

# An API session, as the ledger's functions tell one (credits 0010's API_SESSION).
API_SESSION = (f"(public.auteur_user_id() IS NOT NULL OR session_user = '{API_ROLE}' "
               f"OR pg_catalog.current_setting('role') = '{API_ROLE}')")

TRIGGER = f"""
CREATE FUNCTION public.auteur_job_ended_stays_ended() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF {API_SESSION} THEN
        IF OLD.status IN ('completed', 'failed', 'canceled', 'aborted')
           AND (NEW.status, NEW.credits_refund, NEW.credits_refunded)
               IS DISTINCT FROM (OLD.status, OLD.credits_refund, OLD.credits_refunded) THEN
            RAISE EXCEPTION 'an ended job stays as it ended' USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF NEW.credits_refund > NEW.credits_cost THEN
            RAISE EXCEPTION 'a job''s refund is at most its cost' USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER jobs_ended_stay_ended BEFORE UPDATE OF status, credits_refund, credits_refunded ON public.jobs
FOR EACH ROW EXECUTE FUNCTION public.auteur_job_ended_stays_ended();
"""

TRIGGER_REVERSE = """
DROP TRIGGER jobs_ended_stay_ended ON public.jobs;
DROP FUNCTION public.auteur_job_ended_stays_ended();
"""


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0026_queue_functions_search_path"),
        ("users", "0003_api_role"),
    ]

    operations = [
        migrations.RunSQL(TRIGGER, TRIGGER_REVERSE),
    ]
