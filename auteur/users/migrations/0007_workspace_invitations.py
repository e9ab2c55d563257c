"""Invitations to workspaces. The API's role reads those of the workspaces its user is a member
of; every invitation is made, revoked and taken on the owner's login (auteur/users/workspace_services.py)."""

import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant

MEMBERS_ONLY = """
ALTER TABLE workspace_invitations ENABLE ROW LEVEL SECURITY;
CREATE POLICY members_only ON workspace_invitations FOR SELECT USING (auteur_is_member(workspace_id));
"""
MEMBERS_ONLY_REVERSE = """
DROP POLICY members_only ON workspace_invitations;
ALTER TABLE workspace_invitations DISABLE ROW LEVEL SECURITY;
"""


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0006_workspaces'),
    ]

    operations = [
        migrations.CreateModel(
            name='Invitation',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('role', models.CharField(choices=[('owner', 'Owner'), ('admin', 'Admin'), ('editor', 'Editor'), ('viewer', 'Viewer'), ('billing', 'Billing')], max_length=16)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField()),
                ('accepted_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('accepted_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('invited_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='invitations', to='users.workspace')),
            ],
            options={
                'db_table': 'workspace_invitations',
                'ordering': ('-created_at',),
                'indexes': [models.Index(fields=['workspace', '-created_at'], name='invitations_by_workspace')],
                'constraints': [models.CheckConstraint(condition=models.Q(('role__in', ['owner', 'admin', 'editor', 'viewer', 'billing'])), name='workspace_invitation_role')],
            },
        ),
        migrations.RunSQL(MEMBERS_ONLY, MEMBERS_ONLY_REVERSE),
        migrations.RunSQL(*api_grant("workspace_invitations", "SELECT")),
    ]
