# A lease names its user now: the table gets the owner's policy (a deletion of no one's stays
# visible to every request, which may read only its id, user and bytes, never its key), and the
# API's role may write and read a lease's user and bytes, as the storage quota counts them.

from django.db import migrations

from auteur.core.rls import api_grant

TABLE = "media_pendingobjectdeletion"
POLICY = (
    f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY;\n"
    f"CREATE POLICY owner_only ON {TABLE} USING (user_id IS NULL OR user_id = auteur_user_id());",
    f"DROP POLICY owner_only ON {TABLE};\nALTER TABLE {TABLE} DISABLE ROW LEVEL SECURITY;",
)
GRANTS = (
    api_grant(TABLE, "SELECT (id, user_id, bytes), INSERT (key, due_at, user_id, bytes), DELETE")[0],
    api_grant(TABLE, "SELECT (id), INSERT (key, due_at), DELETE")[0],  # as users.0005 left it
)


class Migration(migrations.Migration):

    dependencies = [
        ("media", "0010_lease_bytes"),
        ("users", "0005_api_grants"),
    ]

    operations = [
        migrations.RunSQL(*POLICY),
        migrations.RunSQL(*GRANTS),
    ]
