"""The API's role sets a review hold and never lifts one.

It holds UPDATE on held_since and held_reason (a refusal past a threshold sets the hold in the
request's transaction), which alone would let a statement it runs set held_since back to null: its
account's own hold lifted without staff. Every row it updates must be held afterwards; lifting is
staff's, on the owner's login (jobs.life.standing.standing_lift, from the admin). The rows it may
update are not narrowed (USING true): the standing's row is read FOR UPDATE, which an UPDATE
policy's USING also filters.
"""

from django.db import migrations

from auteur.core.rls import API_ROLE

FORWARD = f"""
CREATE POLICY api_holds_only ON account_standings AS RESTRICTIVE FOR UPDATE TO {API_ROLE}
    USING (true) WITH CHECK (held_since IS NOT NULL);
"""
REVERSE = "DROP POLICY api_holds_only ON account_standings;"


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0031_media_verdicts'),
    ]

    operations = [
        migrations.RunSQL(FORWARD, REVERSE),
    ]
