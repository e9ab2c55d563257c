"""An account's personal workspace is made and removed by the database, with the account; the API's
role writes no workspace and no seat.

0006 let the API's role insert a personal workspace and its owner seat for the account its session
names, and rename any workspace it is a member of. A session that could set `app.user_id` (an
injected statement) could then name a team workspace's id, create an account row of that id and
give it an owner seat there. Now a trigger on `users` makes the personal workspace and its owner
seat in the statement that inserts the account, whoever inserts it (the first token, the admin, a
script), and removes the workspace with the account; an account whose id is already a workspace's
cannot be created. The role keeps SELECT on both tables; a rename is made on the owner's login after
the role check, like every other change of a workspace.
"""

from django.db import migrations

from auteur.core.rls import API_ROLE, api_grant

BY_THE_DATABASE = """
DROP POLICY personal_owner ON workspace_members;
DROP POLICY personal_created ON workspaces;
DROP POLICY members_edit ON workspaces;

-- As its owner: it writes what the API's role may not. Its name and search_path are pinned, and
-- nobody may call it but as the trigger.
CREATE FUNCTION auteur_personal_workspace() RETURNS trigger
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
REVOKE ALL ON FUNCTION auteur_personal_workspace() FROM PUBLIC;
CREATE TRIGGER personal_workspace AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION auteur_personal_workspace();

CREATE OR REPLACE FUNCTION auteur_is_member(workspace uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM public.workspace_members m
                   WHERE m.workspace_id = workspace AND m.user_id = public.auteur_user_id())
$$;
"""  # noqa: S608 - module constants only

BY_THE_DATABASE_REVERSE = f"""
DROP TRIGGER personal_workspace ON users;
DROP FUNCTION auteur_personal_workspace();
CREATE POLICY members_edit ON workspaces FOR UPDATE USING (auteur_is_member(id));
CREATE POLICY personal_created ON workspaces FOR INSERT
    WITH CHECK (personal AND id = auteur_user_id() AND created_by_id = auteur_user_id());
CREATE POLICY personal_owner ON workspace_members FOR INSERT
    WITH CHECK (workspace_id = auteur_user_id() AND user_id = auteur_user_id() AND role = 'owner');
GRANT INSERT, UPDATE (name, updated_at) ON workspaces TO {API_ROLE};
GRANT INSERT ON workspace_members TO {API_ROLE};
"""


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0007_workspace_invitations"),
    ]

    operations = [
        migrations.RunSQL(BY_THE_DATABASE, BY_THE_DATABASE_REVERSE),
        migrations.RunSQL(api_grant("workspaces", "SELECT")[0], migrations.RunSQL.noop),
        migrations.RunSQL(api_grant("workspace_members", "SELECT")[0], migrations.RunSQL.noop),
    ]
