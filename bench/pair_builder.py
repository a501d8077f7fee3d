"""Pair builder benchmark: ``build_pairs`` on 1,000,000 feedback signals.

Target (issue 20), on this 2-core machine: the build takes < 60 s. The signals are written
by SQL into their own database (BENCH_DATABASE_URL, default chosen_bench_pairs) over
300,000 prompts, as a busy chat deployment's log would give them:

- 40% thumbs: 250,000 votes of different users on the 4 replies of 20,000 popular prompts
  (about three votes a reply; the first two replies mostly liked, the others mostly not),
  150,000 single thumbs on other prompts;
- 20% ratings (1–5 stars, mapped on 0..1), 20% regenerations (the regeneration kept 70% of
  the time), 10% user edits, 10% complaints or nothing at all.

Replies are 300–800 characters, prompts 120–400. The database is filled once and reused
(``--refill`` starts again); each run times a first build (no pairs yet) and a rebuild of
the same signals, and prints the process's peak RSS beside them.

    .venv/bin/python bench/pair_builder.py [--signals 1000000] [--refill]
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@localhost:5432/chosen_bench_pairs")
from benchdb import DATABASE_URL, prepare_database  # noqa: E402

TARGET_SECONDS = 60
POPULAR = 20_000
PROMPTS = 300_000


def setup() -> None:
    prepare_database()
    os.environ.update(DATABASE_URL=DATABASE_URL, LOG_LEVEL="WARNING", DJANGO_DEBUG="false")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()


def fill(signals: int, refill: bool):
    """The bench project with ``signals`` feedback signals (made once, reused)."""
    from django.db import connection, transaction
    from django_scopes import scopes_disabled

    from tasks.models import FeedbackSignal, Organization, Project

    name = f"feedback {signals}"
    with scopes_disabled():
        org, _ = Organization.objects.get_or_create(slug="pairs-bench", defaults={"name": "P"})
        project = Project.objects.filter(organization=org, name=name).first()
        if project and refill:
            project.delete()
            project = None
        if project and FeedbackSignal.objects.filter(project=project).count() == signals:
            return project
        if project:
            project.delete()
        project = Project.objects.create(organization=org, name=name, pair_settings={})
    scale = signals / 1_000_000
    prompts, popular = max(10, int(PROMPTS * scale)), max(2, int(POPULAR * scale))
    rest = prompts - popular
    params = {"org": org.pk, "project": project.pk, "prompts": prompts, "popular": popular}
    # Signal numbers g = 1..n fall into the mix's bands, in this order.
    bands = [int(b * signals) for b in (0.25, 0.40, 0.60, 0.80, 0.90, 1.0)]
    params.update(zip(("b1", "b2", "b3", "b4", "b5", "b6"), bands, strict=True))
    params["rest"] = rest
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks_prompt (organization_id, project_id, external_id, text, messages, "
            "metadata, source, content_hash, created_at) SELECT %(org)s, %(project)s, "
            "'p' || g, 'Question ' || g || ': ' || repeat(md5(g::text), 3 + g %% 10), "
            "NULL, '{}', 'bench.jsonl', md5('prompt' || g) || md5(g::text), now() "
            "FROM generate_series(1, %(prompts)s) g",
            params,
        )
        cursor.execute(
            "CREATE TEMP TABLE bench_prompt AS SELECT id, substr(external_id, 2)::int AS n, "
            "content_hash FROM tasks_prompt WHERE project_id = %(project)s",
            params,
        )
        cursor.execute("CREATE INDEX ON bench_prompt (n)")
        cursor.execute(
            "INSERT INTO tasks_candidate (organization_id, prompt_id, text, source, source_key, "
            "model, parameters, finish_reason, content_hash, created_at) "
            "SELECT %(org)s, p.id, 'Reply ' || k || ' to ' || p.n || ': ' "
            "|| repeat(md5(p.n || '-' || k), 9 + (p.n * 7 + k) %% 16), 'feedback_log', "
            "'r' || k, 'bench-model', '{}', '', md5(p.n || '-' || k) || md5(k::text), now() "
            "FROM bench_prompt p CROSS JOIN generate_series(0, 3) k "
            "WHERE k < 2 OR p.n <= %(popular)s",
            params,
        )
        cursor.execute(
            "CREATE TEMP TABLE bench_reply AS SELECT p.n, substr(c.source_key, 2)::int AS k, "
            "c.id FROM tasks_candidate c JOIN bench_prompt p ON p.id = c.prompt_id"
        )
        cursor.execute("CREATE INDEX ON bench_reply (n, k)")
        cursor.execute("ANALYZE bench_prompt")
        cursor.execute("ANALYZE bench_reply")
        # Each signal: its prompt number n, the reply k and the other reply (or -1).
        cursor.execute(
            """
            CREATE TEMP TABLE bench_plan AS
            SELECT g,
              CASE WHEN g <= %(b1)s THEN 1 + g %% %(popular)s
                   ELSE %(popular)s + 1 + (g::bigint * 7919) %% %(rest)s END AS n,
              CASE WHEN g <= %(b1)s THEN (g / %(popular)s) %% 4 ELSE 0 END AS k,
              CASE WHEN g > %(b3)s AND g <= %(b5)s THEN 1 ELSE -1 END AS other_k,
              random() AS r
            FROM generate_series(1, %(b6)s) g
            """,
            params,
        )
        cursor.execute(
            """
            INSERT INTO tasks_feedbacksignal (organization_id, project_id, kind, prompt_id,
              reply_id, other_id, conversation_key, thumbs, score, complaint, model,
              occurred_at, user_hash, data, source, line, created_at)
            SELECT %(org)s, %(project)s, 'feedback', p.id, r.id, o.id, p.content_hash,
              CASE WHEN s.g <= %(b1)s THEN
                     CASE WHEN (s.k < 2) = (s.r < 0.8) THEN 1 ELSE -1 END
                   WHEN s.g <= %(b2)s THEN CASE WHEN s.r < 0.6 THEN 1 ELSE -1 END
              END,
              CASE WHEN s.g > %(b2)s AND s.g <= %(b3)s THEN floor(s.r * 5) / 4 END,
              s.g > %(b5)s AND s.r < 0.5,
              'bench-model', now() - (s.g || ' seconds')::interval, md5('user' || s.g),
              CASE WHEN s.g > %(b3)s AND s.g <= %(b4)s THEN
                     jsonb_build_object('kept', CASE WHEN s.r < 0.7 THEN 'regenerated_from'
                                                     ELSE 'reply' END)
                   ELSE '{}'::jsonb END,
              'bench.jsonl', s.g, now()
            FROM bench_plan s
            JOIN bench_prompt p ON p.n = s.n
            JOIN bench_reply r ON r.n = s.n AND r.k = s.k
            LEFT JOIN bench_reply o ON o.n = s.n AND o.k = s.other_k
            """,
            params,
        )
        for table in ("bench_plan", "bench_reply", "bench_prompt"):
            cursor.execute(f"DROP TABLE {table}")  # noqa: S608 (a constant name)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tasks_feedbacksignal")
        cursor.execute("VACUUM ANALYZE tasks_candidate")
    print(f"  filled {signals:,} signals in {time.perf_counter() - started:.0f} s", flush=True)
    return project


def _ok(passed: bool) -> str:
    return "yes" if passed else "NO"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--signals", type=int, default=1_000_000)
    parser.add_argument("--refill", action="store_true")
    args = parser.parse_args()
    setup()
    from django.db import connection
    from django_scopes import scope

    from tasks.feedback.pairs import build_pairs
    from tasks.management.commands.build_pairs import counts_table

    project = fill(args.signals, args.refill)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tasks_signalpair WHERE project_id = %s", [project.pk])
        cursor.execute("DELETE FROM tasks_ktoexample WHERE project_id = %s", [project.pk])
    with scope(organization=project.organization):
        started = time.perf_counter()
        counts = build_pairs(project=project)
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = build_pairs(project=project)
        rebuild = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n".join(counts_table(counts)))
    print(f"rebuild: {again['changes']}")
    rows = [
        ("signals", f"{args.signals:,}", "", ""),
        ("pairs", f"{sum(sum(r.values()) for r in counts['pairs'].values()):,}", "", ""),
        ("KTO rows", f"{sum(counts['kto'].values()):,}", "", ""),
        ("first build (s)", f"{first:.1f}", f"< {TARGET_SECONDS}", _ok(first < TARGET_SECONDS)),
        ("rebuild, nothing new (s)", f"{rebuild:.1f}", f"< {TARGET_SECONDS}",
         _ok(rebuild < TARGET_SECONDS)),
        ("process peak RSS (MiB)", f"{rss:.0f}", "", ""),
    ]  # fmt: skip
    print("\nPair builder, PostgreSQL, 2 cores (shared)")
    print(f"{'metric':<30}{'measured':>14}{'target':>10}  ok")
    for name, measured, target, ok in rows:
        print(f"{name:<30}{measured:>14}{target:>10}  {ok}")
    return 0 if first < TARGET_SECONDS and rebuild < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
