"""Input media verdicts: the image screener's decision on a file's pictures, per owner, content and screener."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import api_grant, owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0030_account_standings'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='MediaVerdict',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('content_sha256', models.CharField(max_length=64)),
                ('screener', models.CharField(max_length=64)),
                ('categories', models.JSONField(default=list)),
                ('top_score', models.FloatField()),
                ('frames', models.PositiveSmallIntegerField()),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'media_verdicts',
                'constraints': [models.UniqueConstraint(fields=('user', 'content_sha256', 'screener'), name='media_verdicts_once')],
            },
        ),
        migrations.RunSQL(*owner_policy("media_verdicts")),
        # A submission reads its file's verdict and records one it made; nothing changes a verdict.
        migrations.RunSQL(*api_grant("media_verdicts", "SELECT, INSERT")),
    ]
