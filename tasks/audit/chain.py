"""The trail's hash chain, and checking it.

Every organization's events form one chain (events with no organization form their own):
each event stores its place in it (``sequence``, 1, 2, 3, … with no gaps), the previous
event's hash and its own hash, the SHA-256 of the previous hash followed by the event's
canonical content. PostgreSQL writes the three on INSERT (trigger
``tasks_auditevent_chain``, migration 0012), under a per-organization advisory lock, so
parallel writers cannot fork the chain and nothing the application or a raw INSERT sends
can set them.

Checking does not trust that trigger's function: it reads each column as text and hashes
in Python. The canonical content is the columns below, in this order, each written as
``<length>:<text>`` (``-`` for NULL) and joined with ``|``; the text of each is what the SQL
expression gives (timestamps in UTC to the microsecond, the address without its mask,
JSON as PostgreSQL's jsonb prints it, which does not depend on how it was sent).

What a chain catches: an event changed after it was written (its hash no longer matches),
deleted (the sequence jumps and the next event points at a hash that is gone), inserted
or moved between organizations by SQL that bypasses the trigger. What it cannot catch on
its own: the newest events removed from the end, since nothing after them points at them;
``verify`` reports the head (sequence and hash) so it can be noted elsewhere and compared.
Only the database owner can do any of this: the application's role has no UPDATE, DELETE
or TRUNCATE on the table (``tasks.dbroles``), and the trigger refuses UPDATE and DELETE.
"""

import hashlib
from dataclasses import asdict, dataclass, field

from django.db import connection, transaction

from tasks.models import AuditEvent

GENESIS = "0" * 64  # the "previous hash" of a chain's first event

# (name, SQL giving its text): the canonical content, in order. Migration 0012 holds the
# same list in SQL (chosen_audit_hash), frozen as migrations are.
CONTENT = (
    ("organization_id", "organization_id::text"),
    ("sequence", "sequence::text"),
    ("at", "to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
    ("actor_id", "actor_id::text"),
    ("actor_label", "actor_label"),
    ("action", "action"),
    ("object_type", "object_type"),
    ("object_id", "object_id"),
    ("object_repr", "object_repr"),
    ("ip", "host(ip)"),
    ("user_agent", "user_agent"),
    ("changes", "changes::text"),
    ("data", "data::text"),
)
AT = [name for name, _ in CONTENT].index("at")
BATCH = 5000


def link_hash(previous_hash: str, values) -> str:
    """The hash of an event whose content columns read ``values`` (text or None)."""
    content = "|".join("-" if v is None else f"{len(v)}:{v}" for v in values)
    return hashlib.sha256((previous_hash + content).encode()).hexdigest()


@dataclass(frozen=True)
class Break:
    """The first place where a chain does not hold."""

    event_id: int
    sequence: int
    at: str
    action: str
    reason: str

    def __str__(self) -> str:
        where = f"number {self.sequence}, {self.at} UTC, {self.action}"
        return f"event #{self.event_id} ({where}): {self.reason}"


@dataclass
class Verification:
    """One chain checked: how many events, the newest one's place and hash, and the first
    break if there is one."""

    organization_id: int | None
    events: int = 0
    head_sequence: int = 0
    head_hash: str = GENESIS
    broken: Break | None = field(default=None)

    @property
    def intact(self) -> bool:
        return self.broken is None

    def as_dict(self) -> dict:
        return {
            "intact": self.intact,
            "events": self.events,
            "head_sequence": self.head_sequence,
            "head_hash": self.head_hash,
            "broken": asdict(self.broken) if self.broken else None,
        }


def _rows(organization_id: int | None):
    """The chain's events in sequence order, streamed from one server-side cursor in
    batches (a trail may hold millions of events)."""
    columns = ", ".join(sql for _, sql in CONTENT)
    where = "organization_id IS NULL" if organization_id is None else "organization_id = %s"
    params = [] if organization_id is None else [organization_id]
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(
            f"SELECT id, sequence, previous_hash, hash, action, {columns} "  # noqa: S608
            f"FROM {AuditEvent._meta.db_table} AS e WHERE {where} ORDER BY e.sequence",
            params,
        )
        while rows := cursor.fetchmany(BATCH):
            yield from rows


def verify(organization_id: int | None) -> Verification:
    """Check one organization's chain (``None``: the events of no organization) from its
    first event to its newest, and say where it first breaks."""
    result = Verification(organization_id)
    expected, previous = 1, GENESIS
    for row in _rows(organization_id):
        event_id, sequence, previous_hash, stored_hash, action, *values = row
        at = values[AT].replace("T", " ")[:19]
        reason = None
        if sequence > expected:
            missing = sequence - expected
            reason = (
                f"{missing} event{'s' if missing > 1 else ''} before it "
                f"{'are' if missing > 1 else 'is'} missing (number {expected}"
                f"{f' to {sequence - 1}' if missing > 1 else ''}): deleted from the trail"
            )
        elif sequence < expected:
            reason = f"its number repeats number {sequence}: added to the trail by hand"
        elif previous_hash != previous:
            reason = (
                "it does not point at the event before it: an event was removed, added "
                "or changed and re-hashed by hand"
            )
        elif link_hash(previous_hash, values) != stored_hash:
            reason = "its content does not match its hash: changed after it was written"
        if reason:
            result.broken = Break(event_id, sequence, at, action, reason)
            return result
        result.events += 1
        result.head_sequence, result.head_hash = sequence, stored_hash
        expected, previous = sequence + 1, stored_hash
    return result


def chains() -> list[int | None]:
    """Every chain in the database: the organizations with events, and ``None`` if there
    are events of no organization."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT organization_id FROM {AuditEvent._meta.db_table} "  # noqa: S608
            "ORDER BY organization_id NULLS FIRST"
        )
        return [row[0] for row in cursor.fetchall()]
