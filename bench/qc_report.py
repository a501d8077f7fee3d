"""QC report benchmark: the full report (qc.report.compute_report) of a project with
100,000 judgments from 20 annotators, and of one with 10,000.

Targets (issue 6), on this 2-core machine: under 5 s at 100k; the time at 100k within 12x
of the time at 10k. Projects are filled with SQL: pairwise items of two candidates, each
judged by two annotators (the overlap), labels and a choice answer at random, every third
annotator with a lean to the left slot, one item in 50 a gold item.

Then, as the periodic refresh does it (qc.services.run_report), 10,000 more judgments on the
larger project and a report given the last one and its tally (qc.tally: the judgments
changed since, and those of the items they touch, are read; the duplicates section is
lent while no prompt or candidate came or went): issue 23's target is under 2 s at
1,000,000 judgments (and the full report under 20 s; with ``--sizes 100000 1000000``).
The filled judgments were made over the last 14 days; the 10,000 new ones now. The
tally goes through JSON both ways inside the timing, as the job loads and stores it.

    .venv/bin/python bench/qc_report.py [--sizes 10000 100000] [--annotators 20]
    .venv/bin/python bench/qc_report.py --sizes 100000 1000000   # issue 23's scale
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchdb import DATABASE_URL, prepare_database  # noqa: E402

TARGET_SECONDS = 5.0
TARGET_SCALING = 12.0
# Issue 23, at 1,000,000 judgments: the full report and a refresh after 10,000 new ones.
NEW = 10_000
TARGET_REFRESH_SECONDS = 2.0
TARGET_FULL_SECONDS = 20.0


def setup() -> None:
    prepare_database()
    os.environ.update(DATABASE_URL=DATABASE_URL, LOG_LEVEL="WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()


def fill(judgments: int, annotators: int):
    """A project with judgments / 2 items, each judged by two different annotators."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django_scopes import scopes_disabled

    from tasks.models import Organization, Project
    from tasks.project_templates import DPO_PAIRWISE

    User = get_user_model()
    with scopes_disabled():
        org, _ = Organization.objects.get_or_create(slug="qc-bench", defaults={"name": "QC"})
        project = Project.objects.create(
            organization=org, name=f"qc {judgments} {time.time()}", questions=DPO_PAIRWISE.questions
        )
        people = [
            User.objects.get_or_create(username=f"qc{n}", defaults={"email": f"qc{n}@bench"})[0]
            for n in range(annotators)
        ]
    ids = [p.pk for p in people]
    items = judgments // 2
    params = {"org": org.pk, "project": project.pk, "n": items, "people": ids, "k": annotators}
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks_prompt (organization_id, project_id, external_id, text, metadata, "
            "source, content_hash, created_at) SELECT %(org)s, %(project)s, 'p' || g, "
            "'Prompt ' || g || ' about topic ' || (g %% 97), '{}', 'bench', md5(g::text), now() "
            "FROM generate_series(1, %(n)s) g",
            params,
        )
        cursor.execute(
            "INSERT INTO tasks_candidate (organization_id, prompt_id, text, source, source_key, "
            "model, parameters, finish_reason, content_hash, created_at) SELECT "
            "p.organization_id, p.id, 'Answer ' || v.k || ' to ' || p.external_id || "
            "' with some more words in it', 'imported', 'response_' || v.k, '', '{}', 'stop', "
            "md5(p.id || v.k), now() FROM tasks_prompt p CROSS JOIN (VALUES ('a'), ('b')) v(k) "
            "WHERE p.project_id = %(project)s",
            params,
        )
        cursor.execute(
            "INSERT INTO tasks_item (organization_id, project_id, prompt_id, mode, candidate_key, "
            "target_annotations, assignment_count, random_order, created_at) SELECT %(org)s, "
            "%(project)s, c.prompt_id, 'pairwise', min(c.id) || '-' || max(c.id), 2, 2, 0, now() "
            "FROM tasks_candidate c JOIN tasks_prompt p ON p.id = c.prompt_id "
            "WHERE p.project_id = %(project)s GROUP BY c.prompt_id",
            params,
        )
        # Every 50th item is a gold item whose expected answer is its first candidate.
        cursor.execute(
            "UPDATE tasks_item SET gold = true, gold_outcome = 'preferred', gold_chosen_id = "
            "split_part(candidate_key, '-', 1)::int WHERE project_id = %(project)s "
            "AND id %% 50 = 0",
            params,
        )
    # Two assignments per item: annotators (i, i + 1) around the circle; random order.
    add_judgments(project, params, shifts=(0, 1), items=items)
    with connection.cursor() as cursor:
        # As autovacuum leaves a table that grew over weeks: planner statistics, and the
        # visibility map that lets the medians read judgment_by_person_idx alone.
        cursor.execute("VACUUM ANALYZE annotation_judgment")
        cursor.execute("ANALYZE")
    project.bench_params = params
    return project


def add_judgments(project, params: dict, shifts: tuple, items: int, now: bool = False) -> None:
    """A submitted assignment and its judgment on each of the project's first ``items``
    items by annotator ``item + shift`` around the circle, for each shift; made at some
    time in the last 14 days, or ``now``."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM annotation_assignment")
        (after,) = cursor.fetchone()
        days = 0 if now else 14
        params = {**params, "shifts": list(shifts), "items": items, "after": after, "days": days}
        cursor.execute(
            "INSERT INTO annotation_assignment (organization_id, project_id, item_id, "
            "annotator_id, status, display_order, skip_reason, created_at, expires_at, "
            "finished_at) SELECT %(org)s, %(project)s, i.id, "
            "(%(people)s::int[])[1 + ((i.id + s) %% %(k)s)], 'submitted', "
            "CASE WHEN random() < 0.5 THEN jsonb_build_array(split_part(i.candidate_key, '-', "
            "1)::int, split_part(i.candidate_key, '-', 2)::int) ELSE jsonb_build_array("
            "split_part(i.candidate_key, '-', 2)::int, split_part(i.candidate_key, '-', 1)::int) "
            "END, '', now(), now(), now() FROM (SELECT * FROM tasks_item WHERE project_id = "
            "%(project)s ORDER BY id LIMIT %(items)s) i CROSS JOIN unnest(%(shifts)s::int[]) v(s)",
            params,
        )
        cursor.execute(
            "INSERT INTO annotation_judgment (organization_id, project_id, item_id, "
            "assignment_id, annotator_id, outcome, chosen_id, rejected_id, label, ranking, "
            "answers, rubric_scores, reasoning, time_spent_ms, version, created_at, updated_at) "
            "SELECT a.organization_id, a.project_id, a.item_id, a.id, a.annotator_id, "
            "'preferred', x.chosen, x.other, CASE WHEN x.chosen = "
            "(a.display_order->>0)::int THEN 'Response A Preferred' "
            "ELSE 'Response B Preferred' END, '[]', "
            "jsonb_build_object('alignment_dimension', (ARRAY['helpful','harmless','honest'])"
            "[1 + (a.item_id %% 3)]), '{}', 'because', (20000 + random() * 60000)::int, 1, "
            "t.at, t.at FROM annotation_assignment a "
            "CROSS JOIN LATERAL (SELECT now() - random() * %(days)s * interval '1 day' AS at) t "
            "CROSS JOIN LATERAL (SELECT CASE WHEN a.annotator_id %% 3 = 0 AND random() < 0.8 "
            "THEN (a.display_order->>0)::int WHEN random() < 0.7 THEN (a.display_order->>0)::int "
            "ELSE (a.display_order->>1)::int END AS chosen) c CROSS JOIN LATERAL (SELECT c.chosen, "
            "CASE WHEN c.chosen = (a.display_order->>0)::int THEN (a.display_order->>1)::int "
            "ELSE (a.display_order->>0)::int END AS other) x WHERE a.project_id = %(project)s "
            "AND a.id > %(after)s",
            params,
        )


def measure(project, previous: tuple | None = None) -> tuple[float, tuple]:
    """Seconds for a report (given the last one and its stored tally, or from scratch),
    and the report with its tally as stored."""
    import json

    from django_scopes import scope

    from qc.report import build_report

    with scope(organization=project.organization):
        started = time.perf_counter()
        if previous is None:
            report, tally = build_report(project)
        else:
            report, tally = build_report(project, previous[0], json.loads(previous[1]))
        stored = json.dumps(tally)
        elapsed = time.perf_counter() - started
    assert report["judgments"] > 0
    return elapsed, (report, stored)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--annotators", type=int, default=20)
    args = parser.parse_args()
    setup()
    times = {}
    for size in args.sizes:
        started = time.perf_counter()
        project = fill(size, args.annotators)
        print(f"  filled {size:,} judgments in {time.perf_counter() - started:.0f} s", flush=True)
        runs = [measure(project) for _ in range(2)]
        times[size] = min(seconds for seconds, _ in runs)
    # The periodic refresh (qc.services.run_report): NEW judgments more, the last report given.
    add_judgments(project, project.bench_params, shifts=(2,), items=NEW, now=True)
    refreshed, (report, stored) = measure(project, runs[-1][1])
    computed = report["computed"]
    assert computed["from_last_report"], computed
    small, large = args.sizes
    assert report["judgments"] == large + NEW, report["judgments"]
    ratio = times[large] / times[small]
    print(
        f"\nQC report: {args.annotators} annotators, overlap 2, PostgreSQL, "
        f"{os.cpu_count()} cores (best of 2 runs each)"
    )
    print(f"{'metric':<36} {'measured':>10} {'target':>10}  ok")
    print(f"{f'report at {small:,} judgments (s)':<36} {times[small]:>10.2f}")
    target = TARGET_SECONDS if large <= 100_000 else TARGET_FULL_SECONDS
    ok_time = times[large] < target
    print(
        f"{f'report at {large:,} judgments (s)':<36} {times[large]:>10.2f} "
        f"{f'< {target:g}':>10}  {'yes' if ok_time else 'NO'}"
    )
    # Issue 6's scaling target is of 10k → 100k; past that the ratio is shown, not judged
    # (issue 23 sets the time at 1M instead).
    ok_ratio = ratio <= TARGET_SCALING or large > 100_000
    judged = f"<= {TARGET_SCALING:g}x" if large <= 100_000 else ""
    print(
        f"{f'{large:,} / {small:,}':<36} {ratio:>9.2f}x {judged:>10}  "
        f"{('yes' if ok_ratio else 'NO') if judged else ''}"
    )
    ok_refresh = refreshed < TARGET_REFRESH_SECONDS
    print(
        f"{f'refresh: {NEW:,} new, last report given (s)':<36} {refreshed:>10.2f} "
        f"{f'< {TARGET_REFRESH_SECONDS:g}':>10}  {'yes' if ok_refresh else 'NO'}"
    )
    print(f"{'refresh: rows read':<36} {computed['rows_read']:>10,}")
    print(f"{'refresh: tally as stored (kB)':<36} {len(stored) / 1024:>10.1f}")
    return 0 if ok_time and ok_ratio and ok_refresh else 1


if __name__ == "__main__":
    sys.exit(main())
