"""The API's database role, auteur_api, and auteur_user_id(), which the row-level policies read.

auteur/core/rls.py explains the design; each app's `*_row_level_security` migration enables the policies
on its own tables. As written here the role got every table, and later ones by default privileges:
users.0005_api_grants takes all of that back and grants only what the API's requests use.
"""

from django.db import migrations

from auteur.core.rls import API_ROLE, USER_SETTING

# A role is the cluster's, not the database's: it is created only if missing (an operator may have
# made it, with a password, as the API's own login) and never dropped by a reverse migration
# (another database may use it). The migrations' login becomes a member, so that with one login
# for everything (`make test`) the API can restrict itself with SET ROLE.
ROLE_SQL = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
        CREATE ROLE {API_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    -- (Not pg_has_role: a role's creator is a member with ADMIN OPTION, but may not SET it.)
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = CURRENT_USER) THEN
        BEGIN
            GRANT {API_ROLE} TO CURRENT_USER;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING '% may not grant itself {API_ROLE}: give the API its own login '
                '(DATABASE_API_URL), or run GRANT {API_ROLE} TO %', CURRENT_USER, CURRENT_USER;
        END;
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO {API_ROLE};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {API_ROLE};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {API_ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {API_ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {API_ROLE};
-- The user the session acts for; NULL (no row matches) when none is set.
CREATE FUNCTION auteur_user_id() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('{USER_SETTING}', true), '')::uuid $$;
"""  # noqa: S608 - module constants only

ROLE_REVERSE_SQL = f"""
DROP FUNCTION auteur_user_id();
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {API_ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {API_ROLE};
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {API_ROLE};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {API_ROLE};
REVOKE USAGE ON SCHEMA public FROM {API_ROLE};
"""


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0002_email_is_not_an_identity"),
    ]

    operations = [
        migrations.RunSQL(ROLE_SQL, ROLE_REVERSE_SQL),
    ]
