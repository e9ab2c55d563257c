"""A workspace's likeness policy: `verified` (every workspace, and always a personal one) or `attested`.

Its account reads its own workspace's row: a job submitted in a team workspace runs as the workspace's
account, which is no member of it, and the check of a likeness consent at submission reads the policy.
"""

from django.db import migrations, models

from auteur.core.rls import API_ROLE

OWN_ROW = f"CREATE POLICY account_reads_own ON workspaces FOR SELECT TO {API_ROLE} USING (id = auteur_user_id());"
OWN_ROW_REVERSE = "DROP POLICY account_reads_own ON workspaces;"


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0012_revoke_keys_of_ended_accounts'),
    ]

    operations = [
        migrations.AddField(
            model_name='workspace',
            name='likeness_policy',
            field=models.CharField(choices=[('verified', 'Verified'), ('attested', 'Attested')], db_default='verified', default='verified', max_length=16),
        ),
        migrations.AddConstraint(
            model_name='workspace',
            constraint=models.CheckConstraint(condition=models.Q(('personal', False), ('likeness_policy', 'verified'), _connector='OR'), name='workspace_personal_likeness_verified'),
        ),
        migrations.AddConstraint(
            model_name='workspace',
            constraint=models.CheckConstraint(condition=models.Q(('likeness_policy__in', ['verified', 'attested'])), name='workspace_likeness_policy_known'),
        ),
        migrations.RunSQL(OWN_ROW, OWN_ROW_REVERSE),
    ]
