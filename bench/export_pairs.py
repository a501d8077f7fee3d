"""Export benchmark: 100,000 preference pairs to TRL JSONL with a train/validation split.

Targets (issue 7), on this 2-core machine: at least 20,000 pairs/s; peak memory not growing
between 10,000 and 100,000 pairs (within 1.2x). Each size runs in a fresh process: speed is
timed without tracing, then the same export is run again under tracemalloc for the peak of
Python allocations during the export (what would grow with the dataset); the process's
peak RSS is printed beside it for information.

    .venv/bin/python bench/export_pairs.py [--sizes 10000 100000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
TARGET_RATE = 20_000
TARGET_MEMORY = 1.2


def child(size: int) -> dict:
    import resource
    import tracemalloc

    from qc_report import fill, setup

    # As a worker runs it: without DEBUG, whose query log (up to 9,000 statements) would be
    # counted as memory that grows with the export.
    os.environ["DJANGO_DEBUG"] = "false"
    setup()
    from django_scopes import scope

    from exports.pairs import Options
    from exports.services import export_to_folder

    project = fill(size, 20)  # `size` judgments, every one a preferred pair
    options = Options(policy="all", ratios=(0.8, 0.2), seed=1)
    results = {}
    with tempfile.TemporaryDirectory() as folder, scope(organization=project.organization):
        started = time.perf_counter()
        manifest = export_to_folder(project, "trl", Path(folder) / "a", options)
        results["seconds"] = time.perf_counter() - started
        results["pairs"] = sum(manifest["counts"].values())
        tracemalloc.start()
        export_to_folder(project, "trl", Path(folder) / "b", options)
        results["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        same = (Path(folder) / "a" / "train.jsonl").read_bytes() == (
            Path(folder) / "b" / "train.jsonl"
        ).read_bytes()
        results["identical"] = same
    results["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def _ok(passed: bool) -> str:
    return "yes" if passed else "NO"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    runs = {}
    for size in args.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(size)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=os.environ,
        )
        runs[size] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {size:,}: {runs[size]}", flush=True)
    small, large = args.sizes
    rate = runs[large]["pairs"] / runs[large]["seconds"]
    growth = runs[large]["peak_mib"] / runs[small]["peak_mib"]
    same = runs[large]["identical"]
    rows = [
        ("pairs exported", f"{runs[large]['pairs']:,}", "", ""),
        ("seconds", f"{runs[large]['seconds']:.2f}", "", ""),
        ("pairs/s", f"{rate:,.0f}", f">= {TARGET_RATE:,}", _ok(rate >= TARGET_RATE)),
        (f"peak traced memory at {small:,} (MiB)", f"{runs[small]['peak_mib']:.1f}", "", ""),
        (f"peak traced memory at {large:,} (MiB)", f"{runs[large]['peak_mib']:.1f}", "", ""),
        ("growth", f"{growth:.2f}x", f"<= {TARGET_MEMORY}x", _ok(growth <= TARGET_MEMORY)),
        ("process peak RSS small / large (MiB)",
         f"{runs[small]['max_rss_mib']:.0f} / {runs[large]['max_rss_mib']:.0f}", "", ""),
        ("two runs byte-identical", str(runs[large]["identical"]), "True", _ok(same)),
    ]  # fmt: skip
    print("\nExport to TRL JSONL, 80/20 split by prompt, PostgreSQL, 2 cores")
    print(f"{'metric':<44}{'measured':>14}{'target':>12}  ok")
    for name, measured, target, ok in rows:
        print(f"{name:<44}{measured:>14}{target:>12}  {ok}")
    return 0 if rate >= TARGET_RATE and growth <= TARGET_MEMORY else 1


if __name__ == "__main__":
    sys.exit(main())
