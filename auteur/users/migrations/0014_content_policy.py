"""A workspace's content policy: `standard` (the platform's, every workspace's by default) or `strict`."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('users', '0013_likeness_policy'),
    ]

    operations = [
        migrations.AddField(
            model_name='workspace',
            name='content_policy',
            field=models.CharField(choices=[('standard', 'Standard'), ('strict', 'Strict')], db_default='standard', default='standard', max_length=16),
        ),
        migrations.AddConstraint(
            model_name='workspace',
            constraint=models.CheckConstraint(condition=models.Q(('content_policy__in', ['standard', 'strict'])), name='workspace_content_policy_known'),
        ),
    ]
