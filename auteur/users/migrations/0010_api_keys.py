"""Workspaces' API keys. The API's role reads and marks as used the keys of the account its session
names; before a request's account is known, it finds a key only by the SHA-256 of its secret
(auteur_api_key(), as the table's owner): knowing a key is what finds it. Keys are made and revoked
on the owner's login, after the acting member's role is checked."""

import django.contrib.postgres.fields
import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import API_ROLE, api_grant, owner_policy

BY_SECRET = f"""
CREATE FUNCTION auteur_api_key(secret_hash text) RETURNS SETOF api_keys
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM api_keys WHERE api_keys.secret_hash = auteur_api_key.secret_hash
$$;
REVOKE ALL ON FUNCTION auteur_api_key(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auteur_api_key(text) TO {API_ROLE};
"""  # noqa: S608 - module constants only


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0009_team_accounts'),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiKey',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('prefix', models.CharField(max_length=20)),
                ('secret_hash', models.CharField(max_length=64, unique=True)),
                ('scopes', django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=20), default=list, size=None)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('last_used_ip', models.GenericIPAddressField(blank=True, null=True)),
                ('rate_limit_per_minute', models.PositiveIntegerField(blank=True, null=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('revoked_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('user', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'api_keys',
                'ordering': ('-created_at', 'id'),
                'indexes': [models.Index(fields=['user', '-created_at'], name='api_keys_by_workspace')],
                'constraints': [models.CheckConstraint(condition=models.Q(('scopes__contained_by', ['jobs:read', 'jobs:write', 'projects:read', 'projects:write', 'media:read', 'media:write', 'credits:read', 'credits:write', 'webhooks:read', 'webhooks:write'])), name='api_key_scopes_known')],
            },
        ),
        migrations.RunSQL(*owner_policy("api_keys")),
        migrations.RunSQL(*api_grant("api_keys", "SELECT, UPDATE (last_used_at, last_used_ip)")),
        migrations.RunSQL(BY_SECRET, "DROP FUNCTION auteur_api_key(text);"),
    ]
