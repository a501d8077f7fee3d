"""Audit chain benchmark: what the hash chain costs a write, and how fast it is checked.

- one event INSERTed in its own transaction (as a request writes it) with the chain
  trigger, against the same INSERT into a copy of the table without it (``LIKE …
  INCLUDING ALL``, same indexes): the chain's cost per event; and the same event through
  ``tasks.audit.record`` (the ORM's share);
- eight threads writing to one organization at once (they queue on its advisory lock);
- ``verify`` of an organization with ``--events`` events (written by one INSERT … SELECT,
  so the trigger chains each);
- ``--bulk`` events written by one INSERT … SELECT into a fresh database whose trail was
  ANALYZEd while empty (the trigger's plan must not stay the one made for an empty table).

Targets (issue 17), on this 2-core machine: the chain adds under 1 ms per event; a chain
is checked at 50,000 events/s or more (a million-event trail in 20 s); 20,000 events into a
fresh trail in under 10 s.

    .venv/bin/python bench/audit_chain.py [--writes 2000] [--events 200000]
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchdb import DATABASE_URL, prepare_database  # noqa: E402

TARGET_OVERHEAD_MS = 1.0
TARGET_VERIFY_RATE = 50_000
TARGET_BULK_SECONDS = 10.0  # 20,000 events: about 2 s linear, 64 s with a stale plan


def setup() -> None:
    prepare_database()
    os.environ.update(DATABASE_URL=DATABASE_URL, LOG_LEVEL="WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()


def organization(name: str):
    from django_scopes import scopes_disabled

    from tasks.models import Organization

    stamp = f"{name}-{time.time_ns()}"
    with scopes_disabled():
        return Organization.objects.create(name=stamp, slug=stamp)


def timed_writes(n: int, write) -> list[float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        write(i)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--bulk", type=int, default=20_000)
    args = parser.parse_args()
    setup()
    from django.db import close_old_connections, connection, transaction

    from tasks.audit import Action, record
    from tasks.audit.chain import verify

    org = organization("bench-chain")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE unchained (LIKE tasks_auditevent INCLUDING ALL)")

    numbers = iter(range(1, 10**9))
    insert = (
        "INSERT INTO {} (organization_id, at, actor_label, action, object_type, object_id, "
        "object_repr, user_agent, changes, data, sequence) VALUES "
        "(%s, now(), 'system', %s, '', %s, '', '', '{{}}', %s, %s) RETURNING id"
    )

    def inserting(table):
        def write(i):
            with transaction.atomic(), connection.cursor() as cursor:
                values = [org.pk, Action.NOTE_ADDED, str(i), f'{{"i": {i}}}', next(numbers)]
                cursor.execute(insert.format(table), values)

        return write

    def recorded(i):
        with transaction.atomic():
            record(Action.NOTE_ADDED, organization=org, object_id=str(i), data={"i": i})

    # Interleaved rounds, so that the machine's noise falls on both alike. The same
    # INSERT (the sequence it sends is what the copy keeps and what the trigger replaces).
    with_chain, without, through_record = [], [], []
    for _ in range(4):
        without += timed_writes(args.writes // 4, inserting("unchained"))
        with_chain += timed_writes(args.writes // 4, inserting("tasks_auditevent"))
        through_record += timed_writes(args.writes // 4, recorded)
    p50 = statistics.median(with_chain)
    base = statistics.median(without)

    # Eight writers into one organization at once.
    parallel_org = organization("bench-parallel")
    per_thread = max(args.writes // 8, 1)

    def writer():
        for i in range(per_thread):
            with transaction.atomic():
                record(Action.NOTE_ADDED, organization=parallel_org, object_id=str(i))
        close_old_connections()
        connection.close()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parallel_rate = 8 * per_thread / (time.perf_counter() - started)
    parallel = verify(parallel_org.pk)

    # A long trail, then its check.
    big = organization("bench-verify")
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks_auditevent (organization_id, at, actor_label, action, "
            "object_type, object_id, object_repr, ip, user_agent, changes, data) "
            "SELECT %s, now(), 'lead@example.org', 'judgment.edited', 'judgment', n::text, "
            "'Judgment ' || n, '10.0.0.1', 'Mozilla/5.0', "
            """'{"answers": [{"preference": "A"}, {"preference": "B"}]}', """
            """jsonb_build_object('project', 7, 'n', n) FROM generate_series(1, %s) AS n""",
            [big.pk, args.events],
        )
    fill = time.perf_counter() - started
    started = time.perf_counter()
    result = verify(big.pk)
    seconds = time.perf_counter() - started
    rate = result.events / seconds

    bulk = bulk_into_an_analyzed_empty_trail(args.bulk)

    print()
    print(f"{'metric':<46} {'measured':>12} {'target':>10}  ok")
    print(f"{'one INSERT, no chain, p50 (ms)':<46} {base:>12.2f}")
    print(f"{'one INSERT, chained by the trigger, p50 (ms)':<46} {p50:>12.2f}")
    record_p50 = statistics.median(through_record)
    print(f"{'one event through record() (ORM), p50 (ms)':<46} {record_p50:>12.2f}")
    overhead = p50 - base
    ok = "yes" if overhead < TARGET_OVERHEAD_MS else "NO"
    target = TARGET_OVERHEAD_MS
    print(f"{'the chain costs per event (ms)':<46} {overhead:>12.2f} {target:>10.2f}  {ok}")
    print(f"{'8 parallel writers, one organization (events/s)':<46} {parallel_rate:>12,.0f}")
    print(f"{'  …chain after them intact':<46} {str(parallel.intact):>12}")
    print(f"{f'{args.events:,} events written by one INSERT (s)':<46} {fill:>12.1f}")
    ok = "yes" if rate >= TARGET_VERIFY_RATE and result.intact else "NO"
    print(f"{'verify (events/s)':<46} {rate:>12,.0f} {TARGET_VERIFY_RATE:>10,}  {ok}")
    print(f"{f'verify of {result.events:,} events (s)':<46} {seconds:>12.1f}")
    ok_bulk = bulk < TARGET_BULK_SECONDS
    label = f"{args.bulk:,} events, fresh trail ANALYZEd empty (s)"
    print(f"{label:<46} {bulk:>12.1f} {TARGET_BULK_SECONDS:>10.1f}  {'yes' if ok_bulk else 'NO'}")
    return 0 if overhead < TARGET_OVERHEAD_MS and rate >= TARGET_VERIFY_RATE and ok_bulk else 1


def bulk_into_an_analyzed_empty_trail(events: int) -> float:
    """A fresh database whose trail was ANALYZEd while empty (as after a restore or on a
    new install), then one INSERT … SELECT: the trigger must not keep a plan made for an
    empty table (a full scan per event: quadratic)."""
    import subprocess

    import psycopg

    fresh = DATABASE_URL + "_fresh"
    server = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{fresh.rsplit("/", 1)[1]}"')
        conn.execute(f'CREATE DATABASE "{fresh.rsplit("/", 1)[1]}"')
    env = {**os.environ, "DATABASE_URL": fresh}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tasks_organization (name, slug, created_at, require_mfa, "
            "pseudonym_salt) VALUES ('fresh', 'fresh', now(), false, md5(random()::text))"
        )
        conn.execute("ANALYZE tasks_auditevent")
        started = time.perf_counter()
        conn.execute(
            "INSERT INTO tasks_auditevent (organization_id, at, actor_label, action, "
            "object_type, object_id, object_repr, user_agent, changes, data) "
            "SELECT (SELECT id FROM tasks_organization), now(), 'system', 'note', '', "
            "n::text, '', '', '{}', '{}' FROM generate_series(1, %s) AS n",
            [events],
        )
        seconds = time.perf_counter() - started
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{fresh.rsplit("/", 1)[1]}"')
    return seconds


if __name__ == "__main__":
    sys.exit(main())
