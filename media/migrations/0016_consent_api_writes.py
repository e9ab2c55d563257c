"""What the API's role may write in a consent or a challenge, held by the database itself.

The role's column grants (0015) let it revoke a consent and claim a challenge; its rows are its own
by the owner policy. These restrictive policies narrow the values: a consent the role updates ends
`revoked` (it can never make a failed consent verified), and a challenge it updates ends claimed
(a used challenge can never be freed to be read again). Both USING clauses admit every row the
owner policy does: SELECT ... FOR UPDATE is held to them too, and a claim must still find a used
challenge to answer 409. The worker that records verifications, the speaker's signed link and
staff run as the login, unaffected.
"""

from django.db import migrations

from auteur.core.rls import API_ROLE

FORWARD = f"""
CREATE POLICY api_revokes_only ON consents AS RESTRICTIVE FOR UPDATE TO {API_ROLE}
    USING (true) WITH CHECK (status = 'revoked');
CREATE POLICY api_claims_once ON consent_challenges AS RESTRICTIVE FOR UPDATE TO {API_ROLE}
    USING (true) WITH CHECK (used_by_job_id IS NOT NULL);
"""
REVERSE = """
DROP POLICY api_claims_once ON consent_challenges;
DROP POLICY api_revokes_only ON consents;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("media", "0015_voice_consent"),
    ]

    operations = [migrations.RunSQL(FORWARD, REVERSE)]
