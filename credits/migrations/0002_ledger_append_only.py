"""The ledger is append-only in the database itself, whatever client or code path writes to it.

A row trigger refuses UPDATE and DELETE on credit_transactions; corrections are new entries.
TRUNCATE is deliberately not blocked: it is an owner's operation (the test runner uses it to
empty tables), not something application code issues; keep it from the application's
database role with privileges in production.
"""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION credit_transactions_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit_transactions is append-only: % refused', TG_OP
        USING HINT = 'Write a correcting entry (an adjustment) instead.';
END;
$$;

CREATE TRIGGER credit_transactions_append_only
    BEFORE UPDATE OR DELETE ON credit_transactions
    FOR EACH ROW EXECUTE FUNCTION credit_transactions_append_only();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS credit_transactions_append_only ON credit_transactions;
DROP FUNCTION IF EXISTS credit_transactions_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("credits", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
