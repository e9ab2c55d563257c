"""What the API's database role may do: the statements the API's requests send, table by table.

users.0003_api_role gave auteur_api every table, and every later one by default privileges, while
only the tables of users' data had a policy: a request's connection could read every account's
email, the admin's TOTP keys, the sessions and Stripe's payloads, and make its own account a
superuser. This takes all of that back, on a new database and on one migrated long ago alike: the
role's default privileges (whichever role set them) and its privileges on every table and sequence.
Then each table gets what the requests do on it (GRANTS): the tables of users' data, each behind
its policy, and `users` behind its own: a session reads and edits only the account it acts for,
and may change its profile (name, avatar) but no flag; an account it creates is an ordinary one.

Nothing else: the admin's tables (sessions, TOTP devices, groups and permissions, the admin log,
axes), Stripe's events, the fair-share clocks and the migrations' record stay the owner's. The
admin, Stripe's webhook and the local storage's signed upload act across users on the owner's login
(auteur/core/rls.py). A table a later migration creates is out of the role's reach until that migration
grants it (auteur.core.rls.api_grant), beside its policy.
"""

from django.db import migrations

from auteur.core.rls import API_ROLE, api_grant

# The role's default privileges, for whichever role set them (users.0003 did, for its login).
NO_DEFAULT_PRIVILEGES = f"""
DO $$
DECLARE
    d record;
BEGIN
    FOR d IN
        SELECT a.defaclrole::regrole AS owner, n.nspname AS schema,
               CASE a.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                    WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' END AS kind
        FROM pg_default_acl a LEFT JOIN pg_namespace n ON n.oid = a.defaclnamespace
        WHERE EXISTS (SELECT FROM aclexplode(a.defaclacl) x WHERE x.grantee = '{API_ROLE}'::regrole)
    LOOP
        BEGIN
            EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s %s REVOKE ALL ON %s FROM {API_ROLE}', d.owner,
                           CASE WHEN d.schema IS NULL THEN '' ELSE format('IN SCHEMA %I', d.schema) END, d.kind);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING '% may not revoke the default privileges that % gives {API_ROLE}: as %, run '
                'ALTER DEFAULT PRIVILEGES REVOKE ALL ON % FROM {API_ROLE}', CURRENT_USER, d.owner, d.owner, d.kind;
        END;
    END LOOP;
END $$;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {API_ROLE};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {API_ROLE};
"""  # noqa: S608 - module constants only

# A session as the role sees and edits its own account only. The admin's password login and its
# flags are the owner's business: an account the API creates (the first token of a `sub`) has an
# unusable password (Django's start with "!") and neither flag.
USERS_POLICY = """
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_account ON users FOR SELECT USING (id = auteur_user_id());
CREATE POLICY own_account_edit ON users FOR UPDATE USING (id = auteur_user_id());
CREATE POLICY own_account_created ON users FOR INSERT
    WITH CHECK (id = auteur_user_id() AND NOT is_staff AND NOT is_superuser AND password LIKE '!%');
"""

USERS_POLICY_REVERSE = """
DROP POLICY own_account_created ON users;
DROP POLICY own_account_edit ON users;
DROP POLICY own_account ON users;
ALTER TABLE users DISABLE ROW LEVEL SECURITY;
"""

# Table: what the API's requests do on it, and nothing more. An UPDATE with columns names every
# column a request changes; a locking read (SELECT ... FOR UPDATE) needs one of them. Sequences:
# none (every id is an identity column, which an INSERT may fill without a grant).
GRANTS = {
    # JWTAuthentication reads the caller's account, creates it for a first token; PATCH /users/me.
    "users": "SELECT, INSERT, UPDATE (name, avatar_url, profile_edited_at, updated_at)",
    # Only the ledger's own statement moves a balance (credits/services/ledger.py).
    "credit_accounts": "SELECT, UPDATE (balance, updated_at)",
    "credit_transactions": "SELECT, INSERT",
    "subscriptions": "SELECT",
    "billing_stripe_customers": "SELECT, INSERT",
    "projects": "SELECT, INSERT, UPDATE, DELETE",
    "media_files": "SELECT, INSERT, UPDATE, DELETE",
    "voice_clones": "SELECT, INSERT, UPDATE (source_media_id), DELETE",
    # Keys of objects to delete later, owned by no user: a request adds some, and takes back the
    # leases it added for copied outputs by their ids; it never reads a key.
    "media_pendingobjectdeletion": "SELECT (id), INSERT (key, due_at), DELETE",
    # A submission, a cancel, a cached result, the start of waiting jobs, a project's deletion. A
    # job's input, type, price and owner never change after its charge.
    "jobs": (
        "SELECT, INSERT, UPDATE (status, waiting_for, progress, output_data, error_code, error_message, "
        "started_at, completed_at, updated_at, gpu_seconds, processing_time_ms, credits_refunded, "
        "credits_refund, project_id)"
    ),
    "job_events": "SELECT, INSERT",
    "job_idempotency_keys": "SELECT, INSERT, DELETE",
    # A quote is taken by the job that names it; its price and expiry never change.
    "job_quotes": "SELECT, INSERT, UPDATE (job_id)",
    "job_pieces": "SELECT",
    # Once per job: INSERT ... ON CONFLICT (job_id) DO NOTHING reads the arbiter column.
    "usage_events": "SELECT (job_id), INSERT",
    # No change of a webhook through the API: UPDATE (description) is for the row lock that bounds
    # test messages (webhooks/services.py webhook_test).
    "webhooks": "SELECT, INSERT, UPDATE (description), DELETE",
    "webhook_signing_secrets": "SELECT, INSERT",
    "webhook_job_targets": "SELECT, INSERT",
    "webhook_deliveries": "SELECT, INSERT, DELETE",
    "webhook_delivery_attempts": "SELECT, DELETE",
    "webhook_account_notices": "SELECT, UPDATE (webhook_id)",
}

GRANTS_SQL = "\n".join(api_grant(table, privileges)[0] for table, privileges in GRANTS.items())

# Back to what users.0003 and the apps' policies left: every table, every sequence, and by default
# every later one; the ledger neither updated nor deleted.
GRANTS_REVERSE = f"""
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {API_ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {API_ROLE};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {API_ROLE};
REVOKE UPDATE, DELETE ON credit_transactions FROM {API_ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {API_ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {API_ROLE};
"""  # noqa: S608 - module constants only


class Migration(migrations.Migration):
    # Every table it grants exists: the latest migration of each app with one.
    dependencies = [
        ("users", "0004_user_profile_edited_at"),
        ("credits", "0004_row_level_security"),
        ("billing", "0004_row_level_security"),
        ("projects", "0006_auto_transcribe_by_default"),
        ("media", "0009_unhashed_index"),
        ("jobs", "0018_ended_at_index"),
        ("webhooks", "0002_row_level_security"),
    ]

    operations = [
        migrations.RunSQL(NO_DEFAULT_PRIVILEGES, migrations.RunSQL.noop),
        migrations.RunSQL(USERS_POLICY, USERS_POLICY_REVERSE),
        migrations.RunSQL(GRANTS_SQL, GRANTS_REVERSE),
    ]
