"""auteur_api_key(), which the API's role calls as the table's owner (SECURITY DEFINER), searches only
pg_catalog and pg_temp, and names its table with its schema: an object a session could create in
a schema on the path (public, where PostgreSQL before 15 lets every role create) never stands in for
the one it means."""

from django.db import migrations

API_KEY = """
CREATE OR REPLACE FUNCTION auteur_api_key(secret_hash text) RETURNS SETOF public.api_keys
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM public.api_keys WHERE api_keys.secret_hash = auteur_api_key.secret_hash
$$;
"""
API_KEY_BEFORE = """
CREATE OR REPLACE FUNCTION auteur_api_key(secret_hash text) RETURNS SETOF api_keys
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM api_keys WHERE api_keys.secret_hash = auteur_api_key.secret_hash
$$;
"""
class Migration(migrations.Migration):

    dependencies = [
        ("users", "0010_api_keys"),
    ]

    operations = [
        migrations.RunSQL(API_KEY, API_KEY_BEFORE),
    ]
