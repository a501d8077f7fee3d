"""Feedback-import benchmark: 1,000,000 feedback-log rows from JSONL into PostgreSQL.

Targets (issue 20): at least 20,000 rows/s and peak resident memory under 400 MB.

The rows are realistic in size and mix: prompts of 120-400 characters (a quarter of the
rows repeat an earlier question, some with another case or spacing; one in ten is a
multi-turn conversation), replies of 300-800; thumbs on 60% of the rows, a 1-5 rating on
20%, a regeneration (with the reply the user kept) on 12%, a user edit on 6%, complaints
on 2%; a model, a timestamp and a user id on each. They are written to a temporary file
and imported in a child process (so its peak RSS is its own) into a fresh project, through
``manage.py import_feedback`` with ``--max-bytes`` and ``--max-rows`` (the file is over
the upload limit, CHOSEN_IMPORT_MAX_BYTES: README's feedback section says why the command
is the door for files this size).

The database (chosen_bench_fb) is made anew for every run (``--keep-database`` imports into
it as it is): runs into tables that every earlier run made larger are not comparable.
Besides the targets, the report gives the CPU a row cost in the importing process (Python:
reading, checking, hashing) and in its PostgreSQL backend (COPY, indexes, foreign-key
checks; read from /proc, so only for a PostgreSQL on this machine), the machine's cores
and the host's speed (bench/preflight.py): the import is two threads and a backend on two
cores, and the slower side bounds it.

    .venv/bin/python bench/feedback_import.py               # 1,000,000 rows
    .venv/bin/python bench/feedback_import.py --rows 50000  # a quick run
    BENCH_DATABASE_URL=postgres://… .venv/bin/python bench/feedback_import.py
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@localhost:5432/chosen_bench_fb")
from benchdb import DATABASE_URL, fresh_database, prepare_database  # noqa: E402
from preflight import cpu_times, host_report, reference_loop_ms  # noqa: E402

TARGET_RATE = 20_000
TARGET_RSS_MB = 400
WORDS = [
    "account",
    "invoice",
    "export",
    "settings",
    "password",
    "plan",
    "team",
    "seat",
    "billing",
    "refund",
    "policy",
    "order",
    "delivery",
    "customer",
    "support",
    "request",
    "contract",
    "renewal",
    "discount",
    "upgrade",
    "downgrade",
    "month",
    "year",
    "payment",
    "card",
    "transfer",
    "bank",
    "report",
    "dashboard",
    "user",
    "admin",
    "access",
    "permission",
    "role",
    "project",
    "file",
    "upload",
    "download",
    "limit",
    "error",
    "message",
    "screen",
    "button",
    "page",
    "menu",
    "option",
    "the",
    "a",
    "to",
    "of",
    "and",
    "in",
    "for",
    "with",
    "on",
    "by",
    "from",
    "your",
    "our",
    "this",
    "that",
    "can",
    "will",
    "should",
    "please",
    "how",
    "what",
]


def sentences(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(6, 16))
        out.append(" ".join(words).capitalize() + rng.choice(".!?."))
    return out


def text_of(rng: random.Random, pool: list[str], low: int, high: int, tag: str) -> str:
    target = rng.randint(low, high)
    parts, size = [tag], len(tag)
    while size < target:
        part = rng.choice(pool)
        parts.append(part)
        size += len(part) + 1
    return " ".join(parts)[:target]


def write_rows(path: Path, n: int, seed: int = 20) -> None:
    rng = random.Random(seed)
    pool = sentences(rng, 4000)
    questions: list[str] = []
    models = ["support-7b", "support-13b", "support-70b"]
    start = 1_740_000_000
    with path.open("w") as f:
        for i in range(n):
            if questions and rng.random() < 0.25:
                prompt = rng.choice(questions)
                if rng.random() < 0.3:
                    prompt = prompt.upper() if rng.random() < 0.5 else "  " + prompt
            else:
                prompt = text_of(rng, pool, 120, 400, f"Q{i}:") + "?"
                if len(questions) < 50_000:
                    questions.append(prompt)
                else:
                    questions[rng.randrange(50_000)] = prompt
            messages = [{"role": "user", "content": prompt}]
            if rng.random() < 0.1:
                messages = [
                    {"role": "system", "content": "You are the help desk of Acme."},
                    {"role": "user", "content": text_of(rng, pool, 60, 200, "First:")},
                    {"role": "assistant", "content": text_of(rng, pool, 100, 300, "Sure.")},
                    *messages,
                ]
            row = {
                "id": f"ev-{i}",
                "messages": messages,
                "reply": text_of(rng, pool, 300, 800, f"A{i}."),
                "model": rng.choice(models),
                "timestamp": start + i * 7,
                "user": f"user-{rng.randrange(20_000)}",
            }
            kind = rng.random()
            if kind < 0.6:
                row["thumbs"] = "up" if rng.random() < 0.7 else "down"
            elif kind < 0.8:
                row["rating"] = rng.randint(1, 5)
            elif kind < 0.92:
                row["regenerated_from"] = text_of(rng, pool, 300, 800, f"R{i}.")
                row["kept"] = rng.choice(["reply", "regenerated_from"])
            elif kind < 0.98:
                row["edited"] = text_of(rng, pool, 300, 800, f"E{i}.")
                row["thumbs"] = "down"
            else:
                row["complaint"] = True
            f.write(json.dumps(row) + "\n")


def child(n: int, path: str) -> None:
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path.insert(0, str(ROOT))
    import io

    import django

    django.setup()
    from django.core.management import call_command
    from django_scopes import scopes_disabled

    from tasks.models import Organization, Project

    with scopes_disabled():
        org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
        project = Project.objects.create(organization=org, name=f"feedback {n} {time.time()}")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    own_before, backend_before = _own_cpu(), _process_cpu(backend)
    # The route README gives an operator with a file over the upload limits: the command,
    # told the size and row count of this one import.
    size = Path(path).stat().st_size
    out = io.StringIO()
    started = time.perf_counter()
    call_command(
        "import_feedback",
        f"{org.slug}/{project.pk}",
        path,
        "--kind",
        "feedback",
        "--max-bytes",
        str(size),
        "--max-rows",
        str(n),
        stdout=out,
        stderr=io.StringIO(),
    )
    seconds = time.perf_counter() - started
    own, backend_after = _own_cpu() - own_before, _process_cpu(backend)
    summary = out.getvalue().strip().split(": ", 1)[1].rstrip(".")
    assert summary.startswith(f"{n} rows: {n} signals") and " 0 rows rejected" in summary, summary
    print(
        json.dumps(
            {
                "n": n,
                "seconds": seconds,
                "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mb": rss_before,
                "summary": summary,
                "python_us": own / n * 1e6,
                "postgres_us": None
                if backend_after is None or backend_before is None
                else (backend_after - backend_before) / n * 1e6,
            }
        )
    )


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu(pid: int) -> float | None:
    """Seconds of CPU a process of this machine has used (None: not here, or gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--keep-database", action="store_true", help="import into the bench database as it is"
    )
    args = parser.parse_args()
    if args.keep_database:
        prepare_database()
    else:
        fresh_database()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "feedback-log.jsonl"
        began = time.perf_counter()
        write_rows(path, args.rows)
        size = path.stat().st_size
        took = time.perf_counter() - began
        print(f"wrote {args.rows:,} rows ({size / 1e6:,.0f} MB) in {took:.0f} s")
        loop_before, cores_before = reference_loop_ms(), cpu_times()
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(args.rows), str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            print(out.stderr[-4000:])
            return 1
        result = json.loads(out.stdout.strip().splitlines()[-1])
        cores_after, loop_after = cpu_times(), reference_loop_ms()
    rate = result["n"] / result["seconds"]
    rows = [
        ("rows/s", f"{rate:,.0f}", f">= {TARGET_RATE:,}", rate >= TARGET_RATE),
        (
            "peak RSS (MB)",
            f"{result['rss_peak_mb']:.0f}",
            f"< {TARGET_RSS_MB}",
            result["rss_peak_mb"] < TARGET_RSS_MB,
        ),
        ("seconds", f"{result['seconds']:.1f}", "", True),
        ("MB/s of JSONL", f"{size / 1e6 / result['seconds']:.1f}", "", True),
    ]
    print(f"Feedback import: {args.rows:,} feedback-log rows, PostgreSQL, {os.cpu_count()} cores")
    print(result["summary"])
    print(f"{'metric':<16} {'measured':>12} {'target':>10}  ok")
    for name, measured, target, ok in rows:
        print(f"{name:<16} {measured:>12} {target:>10}  {'yes' if ok else 'NO'}")
    python_us, postgres_us = result["python_us"], result["postgres_us"]
    print(f"CPU a row: importing process (Python) {python_us:.0f} us, ", end="")
    if postgres_us is None:
        print("its PostgreSQL backend not on this machine")
    else:
        print(
            f"its PostgreSQL backend {postgres_us:.0f} us: at most "
            f"{1e6 / max(python_us, postgres_us):,.0f} rows/s with each on a core of its own"
        )
    for label, value in host_report(loop_before, loop_after, cores_before, cores_after):
        print(f"{label}: {value}")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(main())
