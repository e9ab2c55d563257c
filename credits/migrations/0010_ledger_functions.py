"""The ledger's statements as functions of the tables' owner: the API's role moves no balance and no
spend counter by itself.

Before this, the API's role could UPDATE credit_accounts.balance and credit_spend_caps.spent, and
INSERT ledger rows, because a request's charge ran the ledger's statement on its own connection: one
injected statement could mint credits or reset a budget. Now each of the ledger's statements that a
request runs (a job's charge, a batch's charge, a cancel's refund, a bulk cancel's refunds) is a
SECURITY DEFINER function here, and the role keeps only SELECT on the three tables and EXECUTE on
these functions. Each function moves a balance only with the ledger rows that the same statement
writes, and checks what a caller could otherwise abuse:

- a charge only takes credits (its amounts are negative: the entry's type is fixed to usage), from
  the account its session acts for (auteur_user_id(); an API session must name one: API_SESSION
  below; the owner's login names none);
- a batch's move is the sum of its entries, computed here, and a per-job limit holds their largest;
- a refund from an API session is only the one its job's end recorded, once the job has ended
  without success (ENDED_JOB_REFUND below): never the charge of a job still waiting or running;
- a refund gives back 1 to what the job's usage entry took, once (credit_tx_one_refund_per_job), and
  its member, job type and month come from that entry, not from the caller: the counters it gives
  back to are those that counted the charge. It locks the account in a statement of its own first:
  its counters' UPDATE then reads with a snapshot taken after that lock, and so sees a counter that a
  cap set a moment ago made (under the same lock, counting from the ledger the charge but not yet
  this refund), which a snapshot taken before the lock would miss, leaving the counter too high.

Grants, subscriptions, purchases and staff adjustments stay on the owner's login (workers, the admin,
Stripe's webhook), which owns the tables. search_path is pinned to pg_catalog, pg_temp and every name
is qualified: nothing a caller creates stands in for these tables or functions.
"""

from django.db import migrations

from auteur.core.rls import API_ROLE, api_grant

# The statements of credits/services/ledger.py, as they were when this migration was written: a later
# change of one is a new migration that replaces its function.
FUNCTIONS = """
CREATE FUNCTION auteur_ledger_charge_uncapped(p_id uuid, p_user_id uuid, p_amount integer, p_description text, p_job_id uuid, p_job_type text, p_member_id uuid)
RETURNS TABLE (r_id uuid, r_account_id uuid, r_user_id uuid, r_amount integer, r_balance_after integer, r_type varchar, r_description text, r_job_id uuid, r_job_type varchar, r_idempotency_key varchar,
    r_created_by_id uuid, r_member_id uuid, r_created_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    -- The account its session acts for (none: the owner's login, or a worker).
    IF {api_session} AND public.auteur_user_id() IS DISTINCT FROM p_user_id THEN
        RAISE EXCEPTION 'not the session''s account' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_amount IS NULL OR p_amount >= 0 THEN
        RAISE EXCEPTION 'a charge takes credits' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY

        WITH moved AS (
            UPDATE public.credit_accounts SET balance = balance + p_amount, updated_at = now()
            WHERE user_id = p_user_id AND balance + p_amount >= 0 AND NOT capped
            RETURNING id, balance, capped, clock_timestamp() AS at
        )
        INSERT INTO public.credit_transactions
            (id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
             created_by_id, member_id, created_at)
        SELECT p_id, moved.id, p_user_id, p_amount, moved.balance, 'usage', p_description, p_job_id,
               p_job_type, NULL, NULL, p_member_id, moved.at
        FROM moved

        RETURNING id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
            created_by_id, member_id, created_at;
END
$fn$;

CREATE FUNCTION auteur_ledger_charge(p_id uuid, p_user_id uuid, p_amount integer, p_description text, p_job_id uuid, p_job_type text, p_member_id uuid)
RETURNS TABLE (r_id uuid, r_account_id uuid, r_user_id uuid, r_amount integer, r_balance_after integer, r_type varchar, r_description text, r_job_id uuid, r_job_type varchar, r_idempotency_key varchar,
    r_created_by_id uuid, r_member_id uuid, r_created_at timestamptz,
    r_crossed json, r_refused text[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    -- The account its session acts for (none: the owner's login, or a worker).
    IF {api_session} AND public.auteur_user_id() IS DISTINCT FROM p_user_id THEN
        RAISE EXCEPTION 'not the session''s account' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_amount IS NULL OR p_amount >= 0 THEN
        RAISE EXCEPTION 'a charge takes credits' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY

        WITH moved AS (
            UPDATE public.credit_accounts SET balance = balance + p_amount, updated_at = now()
            WHERE user_id = p_user_id AND balance + p_amount >= 0
            RETURNING id, balance, capped, clock_timestamp() AS at
        ), subjects AS (
            SELECT 'workspace'::varchar AS scope, p_user_id::uuid AS subject_id FROM moved WHERE moved.capped
            UNION ALL
            SELECT CASE WHEN k.id IS NULL THEN 'member' ELSE 'key' END, p_member_id::uuid
            FROM moved LEFT JOIN public.api_keys k ON k.id = p_member_id AND k.user_id = p_user_id
            WHERE p_member_id::uuid IS NOT NULL AND p_member_id::uuid <> p_user_id::uuid
            UNION ALL
            SELECT 'member', k.created_by_id
            FROM moved JOIN public.api_keys k ON k.id = p_member_id AND k.user_id = p_user_id
            WHERE k.created_by_id <> p_user_id
        ), counted AS (
            INSERT INTO public.credit_spend_caps AS cap (id, user_id, scope, subject_id, month, spent, notified, crossed, updated_at)
            SELECT gen_random_uuid(), p_user_id, subjects.scope, subjects.subject_id,
                   date_trunc('month', moved.at AT TIME ZONE 'UTC')::date, -p_amount, 0, 0, moved.at
            FROM moved, subjects
            ON CONFLICT ON CONSTRAINT spend_cap_one_per_subject DO UPDATE
                SET spent = (CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent, notified = (CASE WHEN cap.month = EXCLUDED.month THEN cap.notified ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 50 THEN 1 ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 80 THEN 2 ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 100 THEN 4 ELSE 0 END), crossed = ((CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 50 THEN 1 ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 80 THEN 2 ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 100 THEN 4 ELSE 0 END)) & ~(CASE WHEN cap.month = EXCLUDED.month THEN cap.notified ELSE 0 END),
                    month = EXCLUDED.month, updated_at = EXCLUDED.updated_at
                WHERE (cap.monthly_limit IS NULL OR (CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent <= cap.monthly_limit)
                  AND (cap.job_limit IS NULL OR EXCLUDED.spent <= cap.job_limit)
            RETURNING cap.scope, cap.subject_id, cap.monthly_limit, cap.spent, cap.month, cap.crossed
        ),
        entry AS (
        INSERT INTO public.credit_transactions
            (id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
             created_by_id, member_id, created_at)
        SELECT p_id, moved.id, p_user_id, p_amount, moved.balance, 'usage', p_description, p_job_id,
               p_job_type, NULL, NULL, p_member_id, moved.at
        FROM moved
         WHERE (SELECT count(*) FROM counted) = (SELECT count(*) FROM subjects)
        RETURNING id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
            created_by_id, member_id, created_at
        )
        SELECT entry.*,
            (SELECT json_agg(json_build_object('scope', scope, 'subject_id', subject_id, 'monthly_limit', monthly_limit,
                                               'spent', spent, 'month', month, 'crossed', crossed))
             FROM counted WHERE crossed <> 0),
            (SELECT array_agg(s.scope || ' ' || s.subject_id) FROM subjects s
             WHERE NOT EXISTS (SELECT FROM counted c WHERE c.scope = s.scope AND c.subject_id = s.subject_id))

        FROM (SELECT) AS one LEFT JOIN entry ON true;
END
$fn$;

CREATE FUNCTION auteur_ledger_charge_many(p_user_id uuid, p_member_id uuid, p_ids uuid[], p_amounts integer[], p_job_ids uuid[], p_job_types text[], p_descriptions text[])
RETURNS TABLE (r_written bigint, r_crossed json, r_refused text[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    v_amount integer;
    v_largest integer;
    v_negative boolean;
BEGIN
    -- The account its session acts for (none: the owner's login, or a worker).
    IF {api_session} AND public.auteur_user_id() IS DISTINCT FROM p_user_id THEN
        RAISE EXCEPTION 'not the session''s account' USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT sum(a), max(-a), bool_and(a < 0) INTO v_amount, v_largest, v_negative FROM unnest(p_amounts) a;
    IF NOT v_negative OR v_negative IS NULL OR cardinality(p_amounts) <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'a charge takes credits' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY

        WITH moved AS (
            UPDATE public.credit_accounts SET balance = balance + v_amount, updated_at = now()
            WHERE user_id = p_user_id AND balance + v_amount >= 0
            RETURNING id, balance, capped, clock_timestamp() AS at
        ), subjects AS (
            SELECT 'workspace'::varchar AS scope, p_user_id::uuid AS subject_id FROM moved WHERE moved.capped
            UNION ALL
            SELECT CASE WHEN k.id IS NULL THEN 'member' ELSE 'key' END, p_member_id::uuid
            FROM moved LEFT JOIN public.api_keys k ON k.id = p_member_id AND k.user_id = p_user_id
            WHERE p_member_id::uuid IS NOT NULL AND p_member_id::uuid <> p_user_id::uuid
            UNION ALL
            SELECT 'member', k.created_by_id
            FROM moved JOIN public.api_keys k ON k.id = p_member_id AND k.user_id = p_user_id
            WHERE k.created_by_id <> p_user_id
        ), counted AS (
            INSERT INTO public.credit_spend_caps AS cap (id, user_id, scope, subject_id, month, spent, notified, crossed, updated_at)
            SELECT gen_random_uuid(), p_user_id, subjects.scope, subjects.subject_id,
                   date_trunc('month', moved.at AT TIME ZONE 'UTC')::date, -v_amount, 0, 0, moved.at
            FROM moved, subjects
            ON CONFLICT ON CONSTRAINT spend_cap_one_per_subject DO UPDATE
                SET spent = (CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent, notified = (CASE WHEN cap.month = EXCLUDED.month THEN cap.notified ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 50 THEN 1 ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 80 THEN 2 ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 100 THEN 4 ELSE 0 END), crossed = ((CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 50 THEN 1 ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 80 THEN 2 ELSE 0 END) | (CASE WHEN cap.monthly_limit IS NOT NULL AND ((CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent)::bigint * 100 >= cap.monthly_limit::bigint * 100 THEN 4 ELSE 0 END)) & ~(CASE WHEN cap.month = EXCLUDED.month THEN cap.notified ELSE 0 END),
                    month = EXCLUDED.month, updated_at = EXCLUDED.updated_at
                WHERE (cap.monthly_limit IS NULL OR (CASE WHEN cap.month = EXCLUDED.month THEN cap.spent ELSE 0 END) + EXCLUDED.spent <= cap.monthly_limit)
                  AND (cap.job_limit IS NULL OR v_largest <= cap.job_limit)
            RETURNING cap.scope, cap.subject_id, cap.monthly_limit, cap.spent, cap.month, cap.crossed
        ),
        entries AS (
            INSERT INTO public.credit_transactions
                (id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
                 created_by_id, member_id, created_at)
            SELECT e.id, moved.id, p_user_id, e.amount, moved.balance - v_amount + e.running, 'usage', e.description,
                   e.job_id, e.job_type, NULL, NULL, e.member_id,
                   LEAST(moved.at + (e.n - 1) * interval '1 microsecond',
                         date_trunc('month', moved.at) + interval '1 month' - interval '1 microsecond')
            FROM moved, (
                SELECT u.*, sum(u.amount) OVER (ORDER BY u.n) AS running
                FROM unnest(p_ids::uuid[], p_amounts::int[], p_job_ids::uuid[], p_job_types::text[],
                            p_descriptions::text[], array_fill(p_member_id, ARRAY[cardinality(p_ids)]))
                     WITH ORDINALITY AS u(id, amount, job_id, job_type, description, member_id, n)
            ) e WHERE (SELECT count(*) FROM counted) = (SELECT count(*) FROM subjects)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM entries),
            (SELECT json_agg(json_build_object('scope', scope, 'subject_id', subject_id, 'monthly_limit', monthly_limit,
                                               'spent', spent, 'month', month, 'crossed', crossed))
             FROM counted WHERE crossed <> 0),
            (SELECT array_agg(s.scope || ' ' || s.subject_id) FROM subjects s
             WHERE NOT EXISTS (SELECT FROM counted c WHERE c.scope = s.scope AND c.subject_id = s.subject_id));
END
$fn$;

CREATE FUNCTION auteur_ledger_refund(p_id uuid, p_user_id uuid, p_job_id uuid, p_amount integer, p_description text)
RETURNS TABLE (r_id uuid, r_account_id uuid, r_user_id uuid, r_amount integer, r_balance_after integer, r_type varchar, r_description text, r_job_id uuid, r_job_type varchar, r_idempotency_key varchar,
    r_created_by_id uuid, r_member_id uuid, r_created_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    -- The account its session acts for (none: the owner's login, or a worker).
    IF {api_session} AND public.auteur_user_id() IS DISTINCT FROM p_user_id THEN
        RAISE EXCEPTION 'not the session''s account' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- From an API session, only the refund that its job's end recorded (ENDED_JOB_REFUND, in the
    -- migration's Python).
    IF {api_session} AND NOT EXISTS (
        SELECT FROM public.jobs j
        WHERE j.id = p_job_id AND j.user_id = p_user_id AND j.status IN ({ended}) AND j.credits_refund = p_amount
    ) THEN
        RAISE EXCEPTION 'the job has not ended with this refund' USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM FROM public.credit_accounts WHERE user_id = p_user_id FOR UPDATE;
    -- What the refund gives back is tied to the job's charge: 1 to what it took (one refund per job
    -- is the ledger's unique constraint), named for its member, counted back in its month.
    RETURN QUERY
        WITH charge AS (
            SELECT u.member_id, u.job_type, date_trunc('month', u.created_at AT TIME ZONE 'UTC')::date AS month
            FROM public.credit_transactions u
            WHERE u.job_id = p_job_id AND u.type = 'usage' AND u.user_id = p_user_id AND p_amount BETWEEN 1 AND -u.amount
        ), moved AS (
            UPDATE public.credit_accounts SET balance = balance + p_amount, updated_at = now()
            WHERE user_id = p_user_id AND EXISTS (SELECT FROM charge)
            RETURNING id, balance, capped, clock_timestamp() AS at
        ), uncounted AS (
            UPDATE public.credit_spend_caps c SET spent = GREATEST(c.spent - p_amount, 0), updated_at = now()
            FROM charge
            WHERE c.user_id = p_user_id AND c.month = charge.month AND EXISTS (SELECT FROM moved)
              AND (c.subject_id IN (p_user_id, charge.member_id)
                   OR c.subject_id = (SELECT k.created_by_id FROM public.api_keys k
                                      WHERE k.id = charge.member_id AND k.user_id = p_user_id))
        )
        INSERT INTO public.credit_transactions
            (id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
             created_by_id, member_id, created_at)
        SELECT p_id, moved.id, p_user_id, p_amount, moved.balance, 'refund', p_description, p_job_id,
               charge.job_type, NULL, NULL, charge.member_id, moved.at
        FROM moved, charge
        RETURNING id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
            created_by_id, member_id, created_at;
END
$fn$;

CREATE FUNCTION auteur_ledger_refund_many(p_user_id uuid, p_ids uuid[], p_amounts integer[], p_job_ids uuid[],
                                          p_job_types text[], p_descriptions text[])
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    v_written bigint;
BEGIN
    -- The account its session acts for (none: the owner's login, or a worker).
    IF {api_session} AND public.auteur_user_id() IS DISTINCT FROM p_user_id THEN
        RAISE EXCEPTION 'not the session''s account' USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- From an API session, each only the refund that its job's end recorded (as auteur_ledger_refund's).
    IF {api_session} AND EXISTS (
        SELECT FROM unnest(p_job_ids, p_amounts) AS r(job_id, amount)
        WHERE NOT EXISTS (SELECT FROM public.jobs j
                          WHERE j.id = r.job_id AND j.user_id = p_user_id AND j.status IN ({ended})
                            AND j.credits_refund = r.amount)
    ) THEN
        RAISE EXCEPTION 'a job has not ended with this refund' USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM FROM public.credit_accounts WHERE user_id = p_user_id FOR UPDATE;
    -- Each refund is tied to its job's charge (as auteur_ledger_refund's), and the account moves by
    -- their sum only if every one is: the counters give back what they counted of each charge, in
    -- its month.
    WITH e AS (
        SELECT r.id, r.amount, r.job_id, COALESCE(u.job_type, r.job_type) AS job_type, r.description, r.n,
               u.member_id, k.created_by_id AS maker,
               date_trunc('month', u.created_at AT TIME ZONE 'UTC')::date AS month
        FROM unnest(p_ids, p_amounts, p_job_ids, p_job_types, p_descriptions)
             WITH ORDINALITY AS r(id, amount, job_id, job_type, description, n)
        JOIN public.credit_transactions u
          ON u.job_id = r.job_id AND u.type = 'usage' AND u.user_id = p_user_id AND r.amount BETWEEN 1 AND -u.amount
        LEFT JOIN public.api_keys k ON k.id = u.member_id AND k.user_id = p_user_id
    ), total AS (
        SELECT sum(e.amount)::integer AS amount, count(*) AS n FROM e
    ), moved AS (
        UPDATE public.credit_accounts SET balance = balance + total.amount, updated_at = now()
        FROM total
        WHERE user_id = p_user_id AND total.n > 0 AND total.n = cardinality(p_ids)
        RETURNING credit_accounts.id, balance, clock_timestamp() AS at
    ), uncounted AS (
        UPDATE public.credit_spend_caps c SET spent = GREATEST(c.spent - g.amount, 0), updated_at = now()
        FROM (SELECT s.subject_id, e.month, sum(e.amount) AS amount
              FROM e CROSS JOIN LATERAL (SELECT DISTINCT x FROM unnest(ARRAY[p_user_id, e.member_id, e.maker]) AS x
                                         WHERE x IS NOT NULL) AS s(subject_id)
              GROUP BY s.subject_id, e.month) AS g
        WHERE c.user_id = p_user_id AND c.subject_id = g.subject_id AND c.month = g.month AND EXISTS (SELECT FROM moved)
    ), entries AS (
        INSERT INTO public.credit_transactions
            (id, account_id, user_id, amount, balance_after, type, description, job_id, job_type, idempotency_key,
             created_by_id, member_id, created_at)
        SELECT e.id, moved.id, p_user_id, e.amount, moved.balance - total.amount + e.running, 'refund', e.description,
               e.job_id, e.job_type, NULL, NULL, e.member_id,
               LEAST(moved.at + (e.n - 1) * interval '1 microsecond',
                     date_trunc('month', moved.at) + interval '1 month' - interval '1 microsecond')
        FROM moved, total, (SELECT e.*, sum(e.amount) OVER (ORDER BY e.n) AS running FROM e) AS e
        RETURNING 1
    )
    SELECT count(*) INTO v_written FROM entries;
    RETURN v_written;
END
$fn$;
"""

# Who must say which account it acts for, and which refunds: an API session. Either its user is named
# (app.user_id), or it is the API's role: its own login (an injected statement can set app.user_id to
# nothing, never change its login), or the owner's login under SET ROLE (make test's one login, where
# an injected RESET ROLE lifts every restriction anyway). The owner's own login (workers, beat, the
# admin, management commands) is not asked.
API_SESSION = (f"(public.auteur_user_id() IS NOT NULL OR session_user = '{API_ROLE}' "
               f"OR pg_catalog.current_setting('role') = '{API_ROLE}')")
# ENDED_JOB_REFUND: an API session's refund is one its job's end recorded. The job (public.jobs: the
# jobs app's table, read here in SQL; the credits app's Python still imports no app) is the account's,
# has ended without success (failed, canceled, aborted, the statuses of jobs/models.py's JobStatus)
# and records this amount as its refund (credits_refund). Every end that refunds (jobs/life/status.py:
# a cancel, a bulk cancel, a failure, an abort) moves the job's status and records its refund before
# it refunds, in the same transaction. So an injected statement cannot take back the charge of a job
# still pending, queued or processing (which would then run for free), nor more than its end gave
# back: a job that ended refunded 0 writes no refund entry for the one-per-job constraint to stop. The
# API's role may UPDATE a job's state, so jobs 0027 keeps an API session from writing that record
# itself: an ended job's status and refund stay as its end wrote them.
ENDED = "'failed', 'canceled', 'aborted'"
FUNCTIONS = FUNCTIONS.replace("{api_session}", API_SESSION).replace("{ended}", ENDED)
assert "{api_session}" not in FUNCTIONS and "{ended}" not in FUNCTIONS

SIGNATURES = (
    "auteur_ledger_charge_uncapped(uuid, uuid, integer, text, uuid, text, uuid)",
    "auteur_ledger_charge(uuid, uuid, integer, text, uuid, text, uuid)",
    "auteur_ledger_charge_many(uuid, uuid, uuid[], integer[], uuid[], text[], text[])",
    "auteur_ledger_refund(uuid, uuid, uuid, integer, text)",
    "auteur_ledger_refund_many(uuid, uuid[], integer[], uuid[], text[], text[])",
)

EXECUTE = "\n".join(f"REVOKE ALL ON FUNCTION {s} FROM PUBLIC;\nGRANT EXECUTE ON FUNCTION {s} TO {API_ROLE};"
                    for s in SIGNATURES)
DROP = "\n".join(f"DROP FUNCTION {s};" for s in SIGNATURES)

# What the role keeps on the ledger's tables: reading them (balances, history, caps); every write is a
# function's above. In reverse, what users.0005 and credits.0007 gave.
GRANTS = (
    api_grant("credit_accounts", "SELECT")[0],
    api_grant("credit_accounts", "SELECT, UPDATE (balance, updated_at)")[0],
)
LEDGER_GRANTS = (
    api_grant("credit_transactions", "SELECT")[0],
    api_grant("credit_transactions", "SELECT, INSERT")[0],
)
CAP_GRANTS = (
    api_grant("credit_spend_caps", "SELECT")[0],
    api_grant("credit_spend_caps", "SELECT, INSERT (id, user_id, scope, subject_id, month, spent, notified, crossed, "
                                   "updated_at), UPDATE (month, spent, notified, crossed, updated_at)")[0],
)


class Migration(migrations.Migration):

    dependencies = [
        ("credits", "0009_cap_alerts"),
        ("users", "0010_api_keys"),
        ("jobs", "0002_refund_amount_and_error_detail"),  # the refunds read jobs.status and credits_refund
    ]

    operations = [
        migrations.RunSQL(FUNCTIONS + EXECUTE, DROP),
        migrations.RunSQL(*GRANTS),
        migrations.RunSQL(*LEDGER_GRANTS),
        migrations.RunSQL(*CAP_GRANTS),
    ]
