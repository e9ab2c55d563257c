"""The functions that run as their owner (SECURITY DEFINER) for the API's role search only pg_catalog
and pg_temp, and name every table and function with its schema: an object a session could create in
a schema on the path (public, where PostgreSQL before 15 lets every role create) never stands in for
the ones these functions mean."""

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
IS_MEMBER = """
CREATE OR REPLACE FUNCTION auteur_is_member(workspace uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT FROM public.workspace_members m
                   WHERE m.workspace_id = workspace AND m.user_id = public.auteur_user_id())
$$;
"""
IS_MEMBER_BEFORE = """
CREATE OR REPLACE FUNCTION auteur_is_member(workspace uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (SELECT FROM workspace_members WHERE workspace_id = workspace AND user_id = auteur_user_id())
$$;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("users", "0010_api_keys"),
    ]

    operations = [
        migrations.RunSQL(API_KEY, API_KEY_BEFORE),
        migrations.RunSQL(IS_MEMBER, IS_MEMBER_BEFORE),
    ]
