"""A team workspace has an account of its own, of its id: the owner of the team's work.

Its `users` row is marked `is_team`: no token signs in as it, the API's role cannot create one, and
the database gives it no personal workspace. Team workspaces made before get theirs here. From now
on a workspace's id is its account's, and the workspace goes with its account (a foreign key).
"""

from django.db import migrations, models


PERSONAL_WORKSPACE = """
CREATE OR REPLACE FUNCTION auteur_personal_workspace() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NOT NEW.is_team THEN
            INSERT INTO public.workspaces (id, name, personal, created_by_id, created_at, updated_at)
                VALUES (NEW.id, 'Personal', true, NEW.id, NEW.created_at, NEW.created_at);
            INSERT INTO public.workspace_members (workspace_id, user_id, role, created_at)
                VALUES (NEW.id, NEW.id, 'owner', NEW.created_at);
        END IF;
        RETURN NEW;
    END IF;
    DELETE FROM public.workspaces WHERE id = OLD.id AND personal;
    RETURN OLD;
END $$;
"""

PERSONAL_WORKSPACE_REVERSE = """
CREATE OR REPLACE FUNCTION auteur_personal_workspace() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.workspaces (id, name, personal, created_by_id, created_at, updated_at)
            VALUES (NEW.id, 'Personal', true, NEW.id, NEW.created_at, NEW.created_at);
        INSERT INTO public.workspace_members (workspace_id, user_id, role, created_at)
            VALUES (NEW.id, NEW.id, 'owner', NEW.created_at);
        RETURN NEW;
    END IF;
    DELETE FROM public.workspaces WHERE id = OLD.id AND personal;
    RETURN OLD;
END $$;
"""

# A session creates a person's account only (its first token), never a team's.
NO_TEAM_ACCOUNT_BY_THE_API = """
DROP POLICY own_account_created ON users;
CREATE POLICY own_account_created ON users FOR INSERT
    WITH CHECK (id = auteur_user_id() AND NOT is_staff AND NOT is_superuser AND NOT is_team AND password LIKE '!%');
"""

NO_TEAM_ACCOUNT_BY_THE_API_REVERSE = """
DROP POLICY own_account_created ON users;
CREATE POLICY own_account_created ON users FOR INSERT
    WITH CHECK (id = auteur_user_id() AND NOT is_staff AND NOT is_superuser AND password LIKE '!%');
"""

TEAM_ACCOUNTS = """
INSERT INTO users (id, email, email_verified, name, avatar_url, password, is_active, is_staff, is_superuser, is_team,
                   created_at, updated_at)
    SELECT id, '', false, '', '', '!', true, false, false, true, created_at, now() FROM workspaces WHERE NOT personal;
ALTER TABLE workspaces ADD CONSTRAINT workspaces_account FOREIGN KEY (id) REFERENCES users (id)
    ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""

TEAM_ACCOUNTS_REVERSE = """
ALTER TABLE workspaces DROP CONSTRAINT workspaces_account;
DELETE FROM users WHERE is_team;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0008_personal_workspace_by_the_database'),
    ]

    operations = [
        migrations.AddField(
            model_name='user',
            name='is_team',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunSQL(PERSONAL_WORKSPACE, PERSONAL_WORKSPACE_REVERSE),
        migrations.RunSQL(NO_TEAM_ACCOUNT_BY_THE_API, NO_TEAM_ACCOUNT_BY_THE_API_REVERSE),
        migrations.RunSQL(TEAM_ACCOUNTS, TEAM_ACCOUNTS_REVERSE),
    ]
