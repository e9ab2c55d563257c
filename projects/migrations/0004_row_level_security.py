"""Row-level security on the projects app's tables: a session as auteur_api sees only its user's rows (auteur/core/rls.py)."""

from django.db import migrations

from auteur.core.rls import owner_policy


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0003_api_role"),
        ("projects", "0003_project_is_library"),
    ]

    operations = [
        migrations.RunSQL(*owner_policy("projects")),
    ]
