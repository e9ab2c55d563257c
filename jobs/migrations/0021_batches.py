"""Batches: many jobs submitted in one request, each job naming its batch."""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant, owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0020_members'),
        ('users', '0005_api_grants'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Batch',
            fields=[
                ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ('member_id', models.UUIDField(blank=True, editable=False, null=True)),
                ('item_count', models.PositiveIntegerField()),
                ('credits_cost', models.PositiveIntegerField()),
                ('priority', models.PositiveSmallIntegerField(choices=[(0, 'low'), (1, 'normal'), (2, 'high')], default=0)),
                ('idempotency_key', models.CharField(blank=True, default='', max_length=255)),
                ('request_hash', models.CharField(blank=True, default='', max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('user', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'job_batches',
                'ordering': ('-created_at',),
                'indexes': [
                    models.Index(fields=['user', '-created_at'], name='job_batches_user_created'),
                ],
                'constraints': [
                    models.UniqueConstraint(condition=models.Q(('idempotency_key', ''), _negated=True), fields=('user', 'idempotency_key'), name='job_batches_user_key'),
                ],
            },
        ),
        migrations.RunSQL(*owner_policy("job_batches")),
        # A request makes a batch and, reusing an expired Idempotency-Key, clears that key on the old one.
        migrations.RunSQL(*api_grant("job_batches", "SELECT, INSERT, UPDATE (idempotency_key)")),
        migrations.AddField(
            model_name='job',
            name='batch',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='jobs', to='jobs.batch'),
        ),
        migrations.AddField(
            model_name='job',
            name='batch_index',
            field=models.PositiveSmallIntegerField(blank=True, null=True),
        ),
    ]
