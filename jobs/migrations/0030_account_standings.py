"""Review holds: an account held for staff review after repeated content policy refusals or confirmed outputs."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant, owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0029_job_moderations'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='AccountStanding',
            fields=[
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to=settings.AUTH_USER_MODEL)),
                ('held_since', models.DateTimeField(blank=True, null=True)),
                ('held_reason', models.CharField(blank=True, choices=[('refusals', 'Refusals'), ('zero_tolerance', 'Zero Tolerance'), ('outputs', 'Outputs')], max_length=16)),
                ('lifted_at', models.DateTimeField(blank=True, null=True)),
                ('lifted_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'account_standings',
                'constraints': [models.CheckConstraint(condition=models.Q(models.Q(('held_reason', ''), ('held_since__isnull', True)), models.Q(('held_since__isnull', False), models.Q(('held_reason', ''), _negated=True)), _connector='OR'), name='account_standings_reason_with_hold')],
            },
        ),
        migrations.RunSQL(*owner_policy("account_standings")),
        # A request reads its account's hold (one primary key read), and a refusal creates the row
        # and sets the hold. Lifting a hold (lifted_at, lifted_by) is staff's, in the admin.
        migrations.RunSQL(*api_grant(
            "account_standings",
            "SELECT (user_id, held_since, held_reason, lifted_at), INSERT (user_id, held_since, held_reason), "
            "UPDATE (held_since, held_reason)",
        )),
        # A refusal counts its account's refusals of the last day and month (when, never what).
        migrations.RunSQL(
            api_grant("screening_refusals", "SELECT (id, user_id, created_at), INSERT")[0],
            api_grant("screening_refusals", "SELECT (id), INSERT")[0],
        ),
    ]
