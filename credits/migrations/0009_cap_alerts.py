"""The thresholds of spend caps crossed, each written once by the charge that crossed it (the API's
role inserts them, for its own account) and announced once by the webhooks worker."""

import credits.models
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant, owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('credits', '0008_usage_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='CapAlert',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('scope', models.CharField(choices=[('workspace', 'Workspace'), ('member', 'Member'), ('key', 'API key')], max_length=20)),
                ('subject_id', models.UUIDField()),
                ('month', models.DateField()),
                ('threshold', models.PositiveSmallIntegerField()),
                ('monthly_limit', models.PositiveIntegerField()),
                ('spent', models.BigIntegerField()),
                ('job_id', models.UUIDField(blank=True, null=True)),
                ('created_at', models.DateTimeField(db_default=credits.models.ClockTimestamp(), editable=False)),
                ('announced_at', models.DateTimeField(blank=True, null=True)),
                ('user', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'credit_cap_alerts',
                'ordering': ('-created_at', '-id'),
                'indexes': [models.Index(condition=models.Q(('announced_at__isnull', True)), fields=['created_at'], name='cap_alerts_unannounced')],
                'constraints': [models.UniqueConstraint(fields=('user', 'scope', 'subject_id', 'month', 'monthly_limit', 'threshold'), name='cap_alert_once')],
            },
        ),
        migrations.RunSQL(*owner_policy("credit_cap_alerts")),
        migrations.RunSQL(*api_grant("credit_cap_alerts", "SELECT, INSERT (user_id, scope, subject_id, month, "
                                                          "threshold, monthly_limit, spent, job_id)")),
    ]
