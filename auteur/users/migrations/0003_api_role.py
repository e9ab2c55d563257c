"""The API's database role, auteur_api, and auteur_user_id(), which the row-level policies read.

auteur/rls.py explains the design; each app's `*_row_level_security` migration enables the policies
on its own tables. Tables created later get auteur_api's privileges by default.
"""

from django.db import migrations

from auteur.rls import ROLE_REVERSE_SQL, ROLE_SQL


class Migration(migrations.Migration):
    dependencies = [
        ("users", "0002_email_is_not_an_identity"),
    ]

    operations = [
        migrations.RunSQL(ROLE_SQL, ROLE_REVERSE_SQL),
    ]
