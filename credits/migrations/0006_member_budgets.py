"""A team member's monthly budget: a counter per (workspace account, member), written by the ledger's
charge and refund statements. Counters start from the ledger for what members spent this month
before this migration; a session as the API's role reaches its account's counters only."""

import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant, owner_policy

# What each team member spent this month: their usage entries of the month less those entries' refunds.
COUNT_THIS_MONTH = """
INSERT INTO credit_spend_caps (id, user_id, scope, subject_id, monthly_limit, month, spent, updated_at)
SELECT gen_random_uuid(), u.user_id, 'member', u.member_id, NULL,
       date_trunc('month', now() AT TIME ZONE 'UTC')::date, SUM(-u.amount - COALESCE(r.amount, 0)), now()
FROM credit_transactions u
JOIN users account ON account.id = u.user_id AND account.is_team
LEFT JOIN credit_transactions r ON r.job_id = u.job_id AND r.type = 'refund'
WHERE u.type = 'usage' AND u.member_id IS NOT NULL
  AND u.created_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY u.user_id, u.member_id
"""


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0005_members'),
        ('users', '0009_team_accounts'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='SpendCap',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('scope', models.CharField(choices=[('member', 'Member')], max_length=20)),
                ('subject_id', models.UUIDField()),
                ('monthly_limit', models.PositiveIntegerField(blank=True, null=True)),
                ('month', models.DateField()),
                ('spent', models.BigIntegerField(default=0)),
                ('updated_at', models.DateTimeField()),
                ('user', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'credit_spend_caps',
                'constraints': [models.UniqueConstraint(fields=('user', 'scope', 'subject_id'), name='spend_cap_one_per_subject'), models.CheckConstraint(condition=models.Q(('scope__in', ['member'])), name='spend_cap_scope_valid'), models.CheckConstraint(condition=models.Q(('spent__gte', 0)), name='spend_cap_spent_non_negative'), models.CheckConstraint(condition=models.Q(('month__day', 1)), name='spend_cap_month_is_its_first_day')],
            },
        ),
        migrations.RunSQL(*owner_policy("credit_spend_caps")),
        # The charge's statement counts (a first charge inserts the counter); limits are set on the
        # owner's login, after the acting member's role is checked.
        migrations.RunSQL(*api_grant("credit_spend_caps", "SELECT, INSERT (id, user_id, scope, subject_id, month, "
                                                          "spent, updated_at), UPDATE (month, spent, updated_at)")),
        migrations.RunSQL(COUNT_THIS_MONTH, migrations.RunSQL.noop),
    ]
