from django.db import migrations

# The owner's function the application's role calls to refresh the planner statistics of
# Chosen's tables after a bulk write (tasks/dbstats.py): PostgreSQL 15 lets only a table's
# owner ANALYZE it, and the application's role owns nothing. Only tables of Chosen's apps,
# named by the caller as plain identifiers; nobody but roles granted EXECUTE
# (tasks.dbroles.grant_app_role) may call it.
CREATE = r"""
CREATE FUNCTION chosen_analyze(tables text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY tables LOOP
        IF name !~ '^(tasks|annotation|qc|exports|chat)_[a-z0-9_]+$'
           OR to_regclass(format('public.%I', name)) IS NULL THEN
            RAISE EXCEPTION 'chosen_analyze: % is not a table of Chosen', name;
        END IF;
        EXECUTE format('ANALYZE public.%I', name);
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION chosen_analyze(text[]) FROM PUBLIC;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0018_pair_build_jobs"),
    ]

    operations = [
        migrations.RunSQL(CREATE, "DROP FUNCTION IF EXISTS chosen_analyze(text[]);"),
    ]
