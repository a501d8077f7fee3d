"""Import benchmark: prompts with two candidates each, from JSONL into PostgreSQL.

Targets (issue 3): at least 5,000 prompts/s at 100,000 prompts on a 2-core machine, peak
resident memory under 300 MB, and time per prompt at 100k within 1.5x of that at 10k.

Each size runs in a fresh child process (so its peak RSS is its own) into a fresh project,
through the same service the command, the API and the admin use.

    .venv/bin/python bench/import_prompts.py            # 10k and 100k
    BENCH_DATABASE_URL=postgres://… .venv/bin/python bench/import_prompts.py
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from benchdb import DATABASE_URL, prepare_database  # noqa: E402

SIZES = [10_000, 100_000]
TARGET_RATE = 5_000
TARGET_RSS_MB = 300
TARGET_SCALING = 1.5


def write_jsonl(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "id": f"p{i}",
                        "text": f"Question {i}: how should support answer request {i}?",
                        "response_a": f"A careful, complete answer to {i}, with next steps.",
                        "response_b": f"A short answer to {i}.",
                        "metadata": {"dimension": ("helpful", "harmless", "honest")[i % 3]},
                    }
                )
                + "\n"
            )


def child(n: int, path: str) -> None:
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django_scopes import scope, scopes_disabled

    from tasks.importers.prompts import import_prompts
    from tasks.models import Organization, Project

    with scopes_disabled():
        org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
        project = Project.objects.create(
            organization=org,
            name=f"bench {n} {time.time()}",
            candidate_fields=["response_a", "response_b"],
        )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with scope(organization=org), open(path, "rb") as stream:
        started = time.perf_counter()
        report = import_prompts(project=project, files=[(Path(path).name, stream)])
        seconds = time.perf_counter() - started
    assert report.prompts_created == n and report.items_created == n, report.summary()
    print(
        json.dumps(
            {
                "n": n,
                "seconds": seconds,
                "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_mb": rss_before,
            }
        )
    )


def main() -> int:
    prepare_database()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for n in SIZES:
            path = Path(folder) / f"prompts-{n}.jsonl"
            write_jsonl(path, n)
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), str(path)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            results[n] = json.loads(out.stdout.strip().splitlines()[-1])
    small, large = results[SIZES[0]], results[SIZES[-1]]
    rate = large["n"] / large["seconds"]
    scaling = (large["seconds"] / large["n"]) / (small["seconds"] / small["n"])
    rows = [
        ("prompts/s at 100k", f"{rate:,.0f}", f">= {TARGET_RATE:,}", rate >= TARGET_RATE),
        (
            "peak RSS at 100k (MB)",
            f"{large['rss_peak_mb']:.0f}",
            f"< {TARGET_RSS_MB}",
            large["rss_peak_mb"] < TARGET_RSS_MB,
        ),
        (
            "time/prompt 100k vs 10k",
            f"{scaling:.2f}x",
            f"<= {TARGET_SCALING}x",
            scaling <= TARGET_SCALING,
        ),
        ("prompts/s at 10k", f"{small['n'] / small['seconds']:,.0f}", "(reference)", True),
        ("seconds for 10k / 100k", f"{small['seconds']:.1f} / {large['seconds']:.1f}", "", True),
    ]
    print(f"Import benchmark: JSONL, 2 candidates per prompt, PostgreSQL, {os.cpu_count()} cores")
    print(f"{'metric':<26} {'measured':>14} {'target':>12}  ok")
    for name, measured, target, ok in rows:
        print(f"{name:<26} {measured:>14} {target:>12}  {'yes' if ok else 'NO'}")
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(main())
