# Fair share between users on a full job type (jobs.life.fairshare): each user's virtual time per
# type, and each type's clock.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from auteur.core.rls import owner_policy


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0008_deadline_indexes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='FairShare',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('type', models.CharField(max_length=32)),
                ('virtual_time', models.FloatField(default=0.0)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'job_fair_share',
                'constraints': [models.UniqueConstraint(fields=('type', 'user'), name='job_fair_share_type_user')],
            },
        ),
        migrations.CreateModel(
            name='TypeClock',
            fields=[
                ('type', models.CharField(max_length=32, primary_key=True, serialize=False)),
                ('virtual_time', models.FloatField(default=0.0)),
            ],
            options={
                'db_table': 'job_type_clocks',
            },
        ),
        migrations.RunSQL(*owner_policy("job_fair_share")),
    ]
