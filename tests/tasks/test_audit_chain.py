"""The audit trail is tamper-evident: each organization's events are chained by SHA-256,
`verify_audit` and a lead's Verify name the first event changed, deleted or added by hand,
and the application's database role cannot rewrite or empty the trail."""

import threading
import uuid
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections, connection, transaction
from django.db.utils import DatabaseError, ProgrammingError
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from tasks.audit import Action, Who, record
from tasks.audit.chain import GENESIS, link_hash, verify
from tasks.dbroles import grant_app_role
from tasks.models import AuditEvent, Project
from tests.factories import ProjectFactory
from tests.tasks.test_audit import events

pytestmark = pytest.mark.django_db


def chain(organization):
    return [
        (e.sequence, e.previous_hash, e.hash)
        for e in sorted(events(organization), key=lambda e: e.sequence)
    ]


@contextmanager
def by_hand(*triggers):
    """What only the database owner can do: write the trail with its triggers off (the
    test connection is a superuser; the change is undone with the test's transaction)."""
    with connection.cursor() as cursor:
        for trigger in triggers:
            cursor.execute(f"ALTER TABLE tasks_auditevent DISABLE TRIGGER {trigger}")
        yield cursor
        for trigger in triggers:
            cursor.execute(f"ALTER TABLE tasks_auditevent ENABLE TRIGGER {trigger}")


def verify_audit(*args) -> tuple[str, CommandError | None]:
    from io import StringIO

    out = StringIO()
    try:
        call_command("verify_audit", *args, stdout=out)
    except CommandError as error:
        return out.getvalue(), error
    return out.getvalue(), None


def some_events(tenant, n=5):
    return [
        record(Action.NOTE_ADDED, organization=tenant.organization, object_repr=f"note {i}")
        for i in range(n)
    ]


# --- the chain -------------------------------------------------------------------------------


def test_each_organizations_events_form_one_chain(acme, globex):
    some_events(acme)
    some_events(globex, 3)
    for tenant in (acme, globex):
        links = chain(tenant.organization)
        assert [s for s, _, _ in links] == list(range(1, len(links) + 1))
        assert links[0][1] == GENESIS
        for (_, _, before), (_, previous, _) in zip(links, links[1:], strict=False):
            assert previous == before
        assert len({h for _, _, h in links}) == len(links)
        result = verify(tenant.organization.pk)
        assert result.intact and result.events == len(links)
        assert (result.head_sequence, result.head_hash) == links[-1][0::2]


def test_django_reads_the_chain_back_from_the_insert(acme):
    event = record(Action.NOTE_ADDED, organization=acme.organization)
    stored = events(acme.organization, pk=event.pk)[0]
    assert (event.sequence, event.previous_hash, event.hash) == (
        stored.sequence,
        stored.previous_hash,
        stored.hash,
    )
    assert len(event.hash) == 64 and event.sequence > 1


def test_what_the_application_sends_cannot_set_the_chain(acme):
    with scopes_disabled():
        forged = AuditEvent.objects.create(
            organization=acme.organization,
            actor_label="x",
            action="forged",
            sequence=1,
            previous_hash="f" * 64,
            hash="f" * 64,
        )
    forged = events(acme.organization, pk=forged.pk)[0]
    assert forged.hash != "f" * 64 and forged.sequence == len(chain(acme.organization))
    assert verify(acme.organization.pk).intact


CONTENTS = [
    {"object_repr": "ünïcødé ✓ 🤖 漢字", "data": {"emoji": "🙂", "nested": {"ß": [1, 2.5]}}},
    {"object_repr": "a|b:3:c - \\ \" '", "user_agent": "Mozilla/5.0 (X11) |-|", "data": {}},
    {"object_repr": "tabs\tand\nnewlines\r\x01\x1f\x7f", "data": {"s": "\u2028\t\x1bx"}},
    {"ip": "2001:DB8::0:1", "data": {"big": 1e20, "small": 1.5e-7, "one": 1.0, "neg": -0.0}},
    {"ip": "::ffff:10.0.0.1", "changes": {"name": ["", None], "n": [True, False]}},
    {"ip": "192.168.0.1", "data": {"int": 12345678901234567890, "list": [[], {}, None]}},
    {"object_repr": "-", "actor_label": "", "data": {"-": "", "": "-"}},
    {"object_repr": "x" * 300, "data": {"keys": {str(i): i for i in range(50)}}},
]


@pytest.mark.parametrize("content", CONTENTS, ids=range(len(CONTENTS)))
def test_any_content_verifies_as_it_was_written(acme, content):
    """The hash written by PostgreSQL and the one recomputed in Python agree whatever the
    event holds: text in any script, separators, control characters, IPv6, JSON numbers
    that PostgreSQL prints differently from how they were sent."""
    who = Who(
        actor=acme.lead,
        label=content.get("actor_label", "x"),
        ip=content.get("ip"),
        user_agent=content.get("user_agent", ""),
    )
    event = record(
        Action.NOTE_ADDED,
        organization=acme.organization,
        object_type="note",
        object_id="7",
        object_repr=content.get("object_repr", ""),
        changes=content.get("changes"),
        data=content.get("data"),
        who=who,
    )
    result = verify(acme.organization.pk)
    assert result.intact, result.broken
    assert result.head_hash == event.hash


# --- tampering is found ---------------------------------------------------------------------


def test_an_edited_event_is_named(acme):
    written = some_events(acme)
    target = written[2]
    with by_hand("tasks_auditevent_append_only") as cursor:
        cursor.execute(
            "UPDATE tasks_auditevent SET object_repr = 'nothing to see' WHERE id = %s",
            [target.pk],
        )
    result = verify(acme.organization.pk)
    assert result.broken.event_id == target.pk
    assert result.broken.sequence == target.sequence
    assert "changed after it was written" in result.broken.reason
    assert result.events == target.sequence - 1
    out, error = verify_audit("--organization", acme.organization.slug)
    assert error is not None and "broken" in str(error)
    assert f"BROKEN at event #{target.pk} (number {target.sequence}" in out


def test_an_edit_with_its_hash_recomputed_breaks_the_next_link(acme):
    written = some_events(acme)
    target = written[1]
    with by_hand("tasks_auditevent_append_only") as cursor:
        cursor.execute(
            "UPDATE tasks_auditevent SET actor_label = 'someone else' WHERE id = %s", [target.pk]
        )
        cursor.execute(
            "UPDATE tasks_auditevent SET hash = chosen_audit_hash(tasks_auditevent) WHERE id = %s",
            [target.pk],
        )
    result = verify(acme.organization.pk)
    assert result.broken.event_id == written[2].pk
    assert "does not point at the event before it" in result.broken.reason


def test_a_deleted_event_is_named_by_the_gap(acme):
    written = some_events(acme)
    with by_hand("tasks_auditevent_append_only") as cursor:
        cursor.execute(
            "DELETE FROM tasks_auditevent WHERE id = ANY(%s)", [[written[1].pk, written[2].pk]]
        )
    result = verify(acme.organization.pk)
    assert result.broken.event_id == written[3].pk
    assert result.broken.reason.startswith(
        f"2 events before it are missing (number {written[1].sequence} to {written[2].sequence})"
    )


def test_an_event_slipped_in_by_hand_is_named(acme):
    written = some_events(acme)
    head = written[-1]
    with by_hand("tasks_auditevent_chain") as cursor:
        cursor.execute(
            "INSERT INTO tasks_auditevent (organization_id, at, actor_label, action, "
            "object_type, object_id, object_repr, user_agent, changes, data, sequence, "
            "previous_hash, hash) VALUES (%s, now(), 'ghost', 'member.added', '', '', '', '', "
            "'{}', '{}', %s, %s, %s) RETURNING id",
            [acme.organization.pk, head.sequence + 1, head.hash, "a" * 64],
        )
        ghost = cursor.fetchone()[0]
    result = verify(acme.organization.pk)
    assert result.broken.event_id == ghost
    assert "content does not match its hash" in result.broken.reason


def test_an_event_moved_to_another_organization_breaks_both_chains(acme, globex):
    written = some_events(acme)
    some_events(globex, 2)
    with by_hand("tasks_auditevent_append_only") as cursor:
        cursor.execute(
            "UPDATE tasks_auditevent SET organization_id = %s, sequence = 999 WHERE id = %s",
            [globex.organization.pk, written[1].pk],
        )
    assert verify(acme.organization.pk).broken.event_id == written[2].pk
    assert verify(globex.organization.pk).broken.event_id == written[1].pk
    out, error = verify_audit()
    assert error is not None
    assert f"{acme.organization.slug}: BROKEN" in out
    assert f"{globex.organization.slug}: BROKEN" in out


def test_verify_audit_reports_every_intact_chain(acme, globex):
    some_events(acme)
    out, error = verify_audit()
    assert error is None
    head = verify(acme.organization.pk)
    assert (
        f"{acme.organization.slug}: intact, {head.events} events, newest number "
        f"{head.head_sequence}, hash {head.head_hash}"
    ) in out
    assert f"{globex.organization.slug}: intact" in out
    assert verify_audit("--organization", "nope")[1] is not None


@pytest.mark.django_db(transaction=True)
def test_parallel_writers_never_fork_a_chain(acme):
    """Sixteen threads, each in its own transaction and connection, append to one
    organization's trail at once: the chain stays one line with no gap and no repeat."""
    before = len(chain(acme.organization))
    start = threading.Barrier(16)
    failures = []

    def write():
        try:
            start.wait()
            for i in range(10):
                with transaction.atomic():
                    record(Action.NOTE_ADDED, organization=acme.organization, object_id=str(i))
        except Exception as error:  # noqa: BLE001 (reported below)
            failures.append(error)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    links = chain(acme.organization)
    assert [s for s, _, _ in links] == list(range(1, before + 161))
    result = verify(acme.organization.pk)
    assert result.intact and result.events == before + 160


@pytest.mark.django_db(transaction=True)
def test_the_migration_chains_the_events_written_before_it(acme, globex):
    """Migration 0012 on a database that already has a trail: every organization's events
    (and those of no organization) are chained in the order they were written, and the
    check in Python agrees with PostgreSQL's hashes."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("tasks", "0011_invitations")])
    try:
        with connection.cursor() as cursor:
            for organization, label in [
                (acme.organization.pk, "a1"),
                (globex.organization.pk, "g1"),
                (None, "n1"),
                (acme.organization.pk, "ä2 | 🤖"),
                (acme.organization.pk, "a3"),
            ]:
                cursor.execute(
                    "INSERT INTO tasks_auditevent (organization_id, at, actor_label, action, "
                    "object_type, object_id, object_repr, ip, user_agent, changes, data) "
                    "VALUES (%s, now(), %s, 'old.event', '', '', '', '::1', '', "
                    """'{"name": ["x", 1.50]}', '{}')""",
                    [organization, label],
                )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    old = [e for e in events() if e.action == "old.event"]
    by_chain = {}
    for event in old:
        by_chain.setdefault(event.organization_id, []).append(event)
    assert [e.actor_label for e in by_chain[acme.organization.pk]] == ["a1", "ä2 | 🤖", "a3"]
    for organization_id, chained in by_chain.items():
        result = verify(organization_id)
        assert result.intact, (organization_id, result.broken)
        assert result.head_hash == chained[-1].hash
    new = record(Action.NOTE_ADDED, organization=acme.organization)
    assert new.previous_hash == by_chain[acme.organization.pk][-1].hash


def test_link_hash_is_the_documented_formula():
    assert (
        link_hash(GENESIS, ["1", None, "a|b"])
        == __import__("hashlib").sha256((GENESIS + "1:1|-|3:a|b").encode()).hexdigest()
    )


# --- the lead's Verify ----------------------------------------------------------------------


def test_a_lead_verifies_the_trail_and_the_outcome_is_recorded(acme, globex, as_user):
    some_events(acme)
    client = as_user(acme.lead)
    head = verify(acme.organization.pk)
    response = client.post(reverse("tasks:audit_verify"))
    assert response.status_code == 302
    page = client.get(reverse("tasks:audit")).content.decode()
    assert 'id="audit-intact"' in page
    check = events(acme.organization, action=Action.AUDIT_VERIFIED)[-1]
    assert check.actor == acme.lead and check.sequence == head.head_sequence + 1
    assert check.data == head.as_dict()
    assert f"All {head.events} entries up to number {head.head_sequence}" in page
    assert f'<code id="audit-head-hash">{head.head_hash}</code>' in page
    # Globex's break is not Acme's business, nor shown to it.
    written = some_events(globex, 2)
    with by_hand("tasks_auditevent_append_only") as cursor:
        cursor.execute("DELETE FROM tasks_auditevent WHERE id = %s", [written[0].pk])
    client.post(reverse("tasks:audit_verify"))
    assert 'id="audit-intact"' in client.get(reverse("tasks:audit")).content.decode()


def test_a_broken_chain_is_shown_to_the_lead(acme, as_user):
    target = some_events(acme)[1]
    with by_hand("tasks_auditevent_append_only") as cursor:
        cursor.execute(
            """UPDATE tasks_auditevent SET data = '{"note": "rewritten"}' WHERE id = %s""",
            [target.pk],
        )
    client = as_user(acme.lead)
    client.post(reverse("tasks:audit_verify"))
    page = client.get(reverse("tasks:audit")).content.decode()
    assert 'id="audit-broken"' in page
    assert f"Broken at entry #{target.pk}</strong> (number {target.sequence}" in page
    recorded = events(acme.organization, action=Action.AUDIT_VERIFIED)[-1].data
    assert recorded["intact"] is False and recorded["broken"]["event_id"] == target.pk


def test_only_leads_verify_and_only_by_post(acme, as_user):
    assert as_user(acme.annotator).post(reverse("tasks:audit_verify")).status_code == 403
    assert as_user(acme.lead).get(reverse("tasks:audit_verify")).status_code == 405
    assert events(acme.organization, action=Action.AUDIT_VERIFIED) == []


# --- the application's database role ---------------------------------------------------------


@pytest.fixture
def app_role(acme):
    """A role made by grant_app_role, current for the rest of the test's transaction
    (CREATE ROLE is transactional in PostgreSQL: the test leaves no role behind)."""
    role = f"chosen_app_test_{uuid.uuid4().hex[:8]}"
    grant_app_role(role, password="not-used")
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL ROLE {role}")
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == role
    return role


def refused(statement, params=()):
    with (
        pytest.raises(DatabaseError) as error,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, params)
    return str(error.value)


def test_the_application_role_cannot_rewrite_or_empty_the_trail(acme, app_role):
    event = record(Action.NOTE_ADDED, organization=acme.organization)  # it can append
    assert event.sequence > 1
    for statement in (
        "TRUNCATE tasks_auditevent",
        "UPDATE tasks_auditevent SET action = 'x'",
        "DELETE FROM tasks_auditevent",
    ):
        assert "permission denied for table tasks_auditevent" in refused(statement)
    for statement in (
        "ALTER TABLE tasks_auditevent DISABLE TRIGGER tasks_auditevent_append_only",
        "DROP TRIGGER tasks_auditevent_chain ON tasks_auditevent",
        "DROP TABLE tasks_auditevent",
        "ALTER TABLE tasks_auditevent DROP CONSTRAINT audit_org_sequence_unique",
    ):
        assert "must be owner of" in refused(statement)
    assert "permission denied for schema public" in refused("CREATE TABLE t (x int)")
    assert "permission denied" in refused("TRUNCATE tasks_project")
    assert verify(acme.organization.pk).intact


def test_the_application_works_as_that_role(acme, app_role, as_user):
    """The role can do what the application does: a lead's page, a project saved and
    changed, its events recorded and chained."""
    project = ProjectFactory(organization=acme.organization, name="Under the app role")
    with scope(organization=acme.organization):
        Project.objects.filter(pk=project.pk).update(name="Renamed")
    client = as_user(acme.lead)
    assert client.get(reverse("tasks:audit")).status_code == 200
    assert client.post(reverse("tasks:audit_verify")).status_code == 302
    assert verify(acme.organization.pk).intact
    with pytest.raises(ProgrammingError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM tasks_auditevent WHERE id = %s", [1])
