"""Spend caps of a whole workspace and of API keys beside members' budgets, a per-job limit for a key,
and the announced thresholds. A workspace's own counter is made when its cap is first set, from the
ledger (credits/services/budgets.py), and counts from then on (`credit_accounts.capped`)."""

from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant



class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0006_member_budgets'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='creditaccount',
            name='capped',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RemoveConstraint(
            model_name='spendcap',
            name='spend_cap_scope_valid',
        ),
        migrations.AddField(
            model_name='spendcap',
            name='crossed',
            field=models.SmallIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='spendcap',
            name='job_limit',
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='spendcap',
            name='notified',
            field=models.SmallIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='spendcap',
            name='scope',
            field=models.CharField(choices=[('workspace', 'Workspace'), ('member', 'Member'), ('key', 'API key')], max_length=20),
        ),
        migrations.AddConstraint(
            model_name='spendcap',
            constraint=models.CheckConstraint(condition=models.Q(('scope__in', ['workspace', 'member', 'key'])), name='spend_cap_scope_valid'),
        ),
        migrations.AddConstraint(
            model_name='spendcap',
            constraint=models.CheckConstraint(condition=models.Q(('job_limit__isnull', True), ('scope', 'key'), _connector='OR'), name='spend_cap_job_limit_is_a_keys'),
        ),
        # The charge's statement counts and marks the thresholds it crossed; limits are set on the
        # owner's login, after the acting member's role is checked.
        migrations.RunSQL(*api_grant("credit_spend_caps", "SELECT, INSERT (id, user_id, scope, subject_id, month, "
                                                          "spent, notified, crossed, updated_at), "
                                                          "UPDATE (month, spent, notified, crossed, updated_at)")),
    ]
