# Each job's charge and refund record the job's type (credits/services/ledger.py), and the index GET
# /usage reads a workspace's range of usage and refund entries from: an index-only
# scan (the ledger is append-only, so its pages stay all-visible once vacuumed) that holds every
# column the grouped queries read (credits/usage.py). bench/usage_query.py measures it against the
# same queries on the other indexes alone.
#
# Built without locking the ledger (CONCURRENTLY: a charge is never kept waiting for it). Written as
# SQL, outside the model's state: an autodetected migration never drops an index the state does
# not hold.

from django.db import migrations, models

CREATE = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS credit_tx_usage_range
ON credit_transactions (user_id, created_at)
INCLUDE (type, amount, member_id, job_id, job_type)
WHERE type IN ('usage', 'refund')
"""
DROP = "DROP INDEX CONCURRENTLY IF EXISTS credit_tx_usage_range"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("credits", "0007_spend_caps"),
    ]

    operations = [
        migrations.AddField(
            model_name="credittransaction",
            name="job_type",
            field=models.CharField(blank=True, max_length=40, null=True),
        ),
        migrations.RunSQL(CREATE, DROP),
    ]
