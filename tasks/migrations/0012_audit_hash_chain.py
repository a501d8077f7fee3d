from django.db import migrations, models

# The audit trail's hash chain (tasks.audit.chain says what it catches and how it is
# checked). PostgreSQL writes sequence, previous_hash and hash on INSERT, under an advisory
# lock per organization so that parallel writers line up. chosen_audit_hash is the
# canonical content of tasks.audit.chain.CONTENT, frozen here as a migration must be; the
# check in Python recomputes it from the columns and does not call this function.
CHAIN = r"""
CREATE FUNCTION chosen_audit_field(value text) RETURNS text
    LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN value IS NULL THEN '-' ELSE length(value)::text || ':' || value END $$;

CREATE FUNCTION chosen_audit_hash(e tasks_auditevent) RETURNS text
    LANGUAGE sql STABLE AS
$$ SELECT encode(sha256(convert_to(e.previous_hash || concat_ws('|',
       chosen_audit_field(e.organization_id::text),
       chosen_audit_field(e.sequence::text),
       chosen_audit_field(to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')),
       chosen_audit_field(e.actor_id::text),
       chosen_audit_field(e.actor_label),
       chosen_audit_field(e.action),
       chosen_audit_field(e.object_type),
       chosen_audit_field(e.object_id),
       chosen_audit_field(e.object_repr),
       chosen_audit_field(host(e.ip)),
       chosen_audit_field(e.user_agent),
       chosen_audit_field(e.changes::text),
       chosen_audit_field(e.data::text)), 'UTF8')), 'hex') $$;

-- Planned afresh each time (force_custom_plan): a plan cached while the table was empty,
-- or ANALYZEd empty, scans the whole table for the newest event, and one INSERT … SELECT of
-- 20,000 events took 64 s instead of 2 (bench/audit_chain.py measures it).
CREATE FUNCTION chosen_audit_chain() RETURNS trigger
    LANGUAGE plpgsql
    SET plan_cache_mode = force_custom_plan AS
$$
DECLARE
    last_sequence bigint;
    last_hash text;
BEGIN
    -- One writer per chain at a time, until its transaction ends.
    PERFORM pg_advisory_xact_lock(1667786611, (coalesce(NEW.organization_id, 0) % 2147483647)::int);
    IF NEW.organization_id IS NULL THEN
        SELECT sequence, hash INTO last_sequence, last_hash FROM tasks_auditevent
         WHERE organization_id IS NULL ORDER BY sequence DESC LIMIT 1;
    ELSE
        SELECT sequence, hash INTO last_sequence, last_hash FROM tasks_auditevent
         WHERE organization_id = NEW.organization_id ORDER BY sequence DESC LIMIT 1;
    END IF;
    NEW.sequence := coalesce(last_sequence, 0) + 1;
    NEW.previous_hash := coalesce(last_hash, repeat('0', 64));
    NEW.hash := chosen_audit_hash(NEW);
    RETURN NEW;
END;
$$;

-- The events already written, chained in the order they were written.
ALTER TABLE tasks_auditevent DISABLE TRIGGER tasks_auditevent_append_only;
DO $$
DECLARE
    e tasks_auditevent;
    chain bigint := -1;
    n bigint;
    h text;
BEGIN
    FOR e IN SELECT * FROM tasks_auditevent ORDER BY organization_id NULLS FIRST, id LOOP
        IF coalesce(e.organization_id, 0) <> chain THEN
            chain := coalesce(e.organization_id, 0);
            n := 0;
            h := repeat('0', 64);
        END IF;
        n := n + 1;
        e.sequence := n;
        e.previous_hash := h;
        h := chosen_audit_hash(e);
        UPDATE tasks_auditevent SET sequence = n, previous_hash = e.previous_hash, hash = h
         WHERE id = e.id;
    END LOOP;
END;
$$;
ALTER TABLE tasks_auditevent ENABLE TRIGGER tasks_auditevent_append_only;

CREATE TRIGGER tasks_auditevent_chain
    BEFORE INSERT ON tasks_auditevent
    FOR EACH ROW EXECUTE FUNCTION chosen_audit_chain();
"""
UNCHAIN = """
DROP TRIGGER IF EXISTS tasks_auditevent_chain ON tasks_auditevent;
DROP FUNCTION IF EXISTS chosen_audit_chain();
DROP FUNCTION IF EXISTS chosen_audit_hash(tasks_auditevent);
DROP FUNCTION IF EXISTS chosen_audit_field(text);
"""


class Migration(migrations.Migration):
    """Chain every organization's audit events by SHA-256 (tamper-evident trail)."""

    dependencies = [("tasks", "0011_invitations")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="sequence",
            field=models.BigIntegerField(db_default=0, editable=False),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="previous_hash",
            field=models.CharField(db_default="", editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(db_default="", editable=False, max_length=64),
        ),
        migrations.RunSQL(CHAIN, UNCHAIN),
        migrations.AddConstraint(
            model_name="auditevent",
            constraint=models.UniqueConstraint(
                fields=("organization", "sequence"),
                name="audit_org_sequence_unique",
                nulls_distinct=False,
            ),
        ),
    ]
