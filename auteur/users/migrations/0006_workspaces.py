"""Workspaces and their members; every existing account gets its personal workspace.

An account's personal workspace has the account's id and the account as its owner, made with the
account from now on (by the database since users.0008). The API's role sees a workspace
and its members only as a member; it may create an account's personal workspace and owner seat, for
the account its session names, and rename a workspace it is a member of. Every other change of a
workspace or of its members is made on the owner's login, after auteur/users/roles.py allowed it.
"""

import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import API_ROLE, api_grant

# Every account made before workspaces gets the one it would have been made with.
PERSONAL_WORKSPACES = """
INSERT INTO workspaces (id, name, personal, created_by_id, created_at, updated_at)
    SELECT id, 'Personal', true, id, created_at, now() FROM users;
INSERT INTO workspace_members (workspace_id, user_id, role, created_at)
    SELECT id, id, 'owner', created_at FROM users;
"""

# auteur_is_member() reads the memberships as their owner (SECURITY DEFINER): a policy of
# workspace_members that read workspace_members itself would recurse. It tells the session only
# whether its own user is a member of a workspace. A row inserted for the session's own user is
# visible to it at once (the RETURNING of its insert), before the function's snapshot sees it.
MEMBERS_ONLY = f"""
CREATE FUNCTION auteur_is_member(workspace uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT FROM workspace_members WHERE workspace_id = workspace AND user_id = auteur_user_id())
$$;
REVOKE ALL ON FUNCTION auteur_is_member(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auteur_is_member(uuid) TO {API_ROLE};

ALTER TABLE workspaces ENABLE ROW LEVEL SECURITY;
CREATE POLICY members_only ON workspaces FOR SELECT USING (auteur_is_member(id));
CREATE POLICY members_edit ON workspaces FOR UPDATE USING (auteur_is_member(id));
CREATE POLICY personal_created ON workspaces FOR INSERT
    WITH CHECK (personal AND id = auteur_user_id() AND created_by_id = auteur_user_id());

ALTER TABLE workspace_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY members_only ON workspace_members FOR SELECT
    USING (user_id = auteur_user_id() OR auteur_is_member(workspace_id));
CREATE POLICY personal_owner ON workspace_members FOR INSERT
    WITH CHECK (workspace_id = auteur_user_id() AND user_id = auteur_user_id() AND role = 'owner');
"""  # noqa: S608 - module constants only

MEMBERS_ONLY_REVERSE = """
DROP POLICY personal_owner ON workspace_members;
DROP POLICY members_only ON workspace_members;
ALTER TABLE workspace_members DISABLE ROW LEVEL SECURITY;
DROP POLICY personal_created ON workspaces;
DROP POLICY members_edit ON workspaces;
DROP POLICY members_only ON workspaces;
ALTER TABLE workspaces DISABLE ROW LEVEL SECURITY;
DROP FUNCTION auteur_is_member(uuid);
"""


class Migration(migrations.Migration):

    dependencies = [
        ("users", "0005_api_grants"),
    ]

    operations = [
        migrations.CreateModel(
            name='Workspace',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('personal', models.BooleanField(default=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'workspaces',
                'ordering': ('created_at',),
            },
        ),
        migrations.CreateModel(
            name='Membership',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('role', models.CharField(choices=[('owner', 'Owner'), ('admin', 'Admin'), ('editor', 'Editor'), ('viewer', 'Viewer'), ('billing', 'Billing')], max_length=16)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL)),
                ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='users.workspace')),
            ],
            options={
                'db_table': 'workspace_members',
                'ordering': ('created_at', 'id'),
                'constraints': [models.UniqueConstraint(fields=('workspace', 'user'), name='workspace_member_once'), models.CheckConstraint(condition=models.Q(('role__in', ['owner', 'admin', 'editor', 'viewer', 'billing'])), name='workspace_member_role')],
            },
        ),
        migrations.RunSQL(PERSONAL_WORKSPACES, migrations.RunSQL.noop),
        migrations.RunSQL(MEMBERS_ONLY, MEMBERS_ONLY_REVERSE),
        migrations.RunSQL(api_grant("workspaces", "SELECT, INSERT, UPDATE (name, updated_at)")[0],
                          api_grant("workspaces", "")[1]),
        migrations.RunSQL(*api_grant("workspace_members", "SELECT, INSERT")),
    ]
