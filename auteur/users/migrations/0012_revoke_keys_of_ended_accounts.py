"""API keys outlive no person: disabling or deleting an account now revokes the keys it made in the
same transaction (auteur.users.services.user_disable). This revokes those left from before: keys
in use whose maker is disabled or deleted (a key is always made by someone, so no maker left means
a deleted one), and the keys of a disabled person's personal workspace. Revoking is not undone."""

from django.db import migrations

REVOKE = """
UPDATE api_keys SET revoked_at = now()
WHERE revoked_at IS NULL AND (
    created_by_id IS NULL
    OR created_by_id IN (SELECT id FROM users WHERE NOT is_active)
    OR user_id IN (SELECT id FROM users WHERE NOT is_active AND NOT is_team)
)
"""


class Migration(migrations.Migration):

    dependencies = [
        ("users", "0011_definer_search_path"),
    ]

    operations = [
        migrations.RunSQL(REVOKE, migrations.RunSQL.noop),
    ]
