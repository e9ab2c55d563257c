"""A job's `type` loses its choices: the types are declared in jobs/specs.py, and adding one must
need no migration. State only: the column (varchar(32)) is unchanged."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0005_row_level_security'),
    ]

    operations = [
        migrations.AlterField(
            model_name='job',
            name='type',
            field=models.CharField(max_length=32),
        ),
    ]
