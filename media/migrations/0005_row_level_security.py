"""Row-level security on the media app's tables: a session as auteur_api sees only its user's rows (auteur/core/rls.py)."""

from django.db import migrations

from auteur.core.rls import owner_policy


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0003_api_role"),
        ("media", "0004_retention_indexes"),
    ]

    operations = [
        migrations.RunSQL(*owner_policy("media_files")),
        migrations.RunSQL(*owner_policy("voice_clones")),
    ]
