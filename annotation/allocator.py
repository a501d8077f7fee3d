"""The next item for an annotator: concurrency-safe, least-covered first, index-backed.

One transaction per call:
1. an open assignment of this annotator in this project is returned again (a reload shows
   the same item);
2. otherwise, if the quota allows, the first item in (assignment_count, random_order) order
   that still wants annotations and that this person never had is locked with
   ``SELECT … FOR UPDATE SKIP LOCKED`` (parallel requests each take a different row instead
   of waiting), its count is raised and an assignment with a shuffled display order made.

``Item.assignment_count`` counts submitted + active assignments; the index
(project, assignment_count, random_order) lets PostgreSQL walk items in allocation order
without scanning the project. Assignments left open past the project's timeout are
reclaimed (expired, their item's count lowered) before allocating.

With the project's ``uncertain`` policy (for leaderboards of more than two sources), step 2
looks first at the next ACTIVE_WINDOW items of that same order and prefers the one whose
candidates' sources have the most uncertain order (the chance that the fit orders them
wrongly, from their distance and its standard error) under a Bradley–Terry fit of the
project's recent judgments (``project_fit``, cached for FIT_EVERY_SECONDS); the
same statement then locks it (or, if a parallel request holds it, the next most
uncertain), with every other rule unchanged. At ``active_random_percent`` the plain order
is used instead, so every pair keeps being measured. A "source" here is the variant: the
model and the column or generation variant (``source_key``) the candidate came from —
sources, not single candidates, because a prompt's two candidates are judged a handful
of times at most while a source meets others thousands of times.

Gold items (attention checks) stay out of that walk. At the project's gold rate a gold item
this person has not seen comes instead (``gold_due``), from a partial index of the few gold
items, in an order that differs per annotator.
"""

import functools
import random
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from annotation import bradley_terry
from annotation.models import Assignment, Judgment
from tasks import sqlrows
from tasks.models import Candidate, Item, Project, Prompt


@dataclass
class Allocation:
    assignment: Assignment | None
    reason: str = ""  # why there is none: "done", "quota"


# Deadlines are counted in minutes: looking for stale assignments of a project once every
# few seconds is soon enough and spares every request three round trips.
RECLAIM_EVERY_SECONDS = 10


def reclaim_expired(project: Project, *, force: bool = False) -> int:
    """Expire this project's assignments left open past their deadline; returns how many.
    Runs at most every RECLAIM_EVERY_SECONDS per project unless ``force``d."""
    if not force and not cache.add(f"chosen:reclaim:{project.pk}", 1, RECLAIM_EVERY_SECONDS):
        return 0
    with transaction.atomic():
        stale = list(
            Assignment.objects.select_for_update(skip_locked=True)
            .filter(
                project=project, status=Assignment.Status.ACTIVE, expires_at__lte=timezone.now()
            )
            .values_list("id", "item_id")
        )
        if not stale:
            return 0
        Assignment.objects.filter(pk__in=[pk for pk, _ in stale]).update(
            status=Assignment.Status.EXPIRED, finished_at=timezone.now()
        )
        release_items(Counter(item_id for _, item_id in stale))
    return len(stale)


def release_items(counts: Counter) -> None:
    """Lower items' assignment counts (an assignment skipped or expired)."""
    by_amount: dict[int, list[int]] = {}
    for item_id, amount in counts.items():
        by_amount.setdefault(amount, []).append(item_id)
    for amount, item_ids in by_amount.items():
        Item.objects.filter(pk__in=item_ids).update(assignment_count=F("assignment_count") - amount)


def next_assignment(*, project: Project, annotator) -> Allocation:
    """The annotator's open assignment in ``project``, or a new one, or none with a reason."""
    reclaim_expired(project)
    allocation = _allocate(project, annotator)
    if allocation.reason == "done" and reclaim_expired(project, force=True):
        allocation = _allocate(project, annotator)  # stale assignments freed items
    return allocation


def _allocate(project: Project, annotator) -> Allocation:
    assignment = None
    if project.gold_rate_percent and gold_due(project, annotator):
        assignment = _take(project, annotator, gold=True)  # None: no unseen gold item left
    if (
        assignment is None
        and project.allocation_policy == Project.AllocationPolicy.UNCERTAIN
        and not explore(project)
    ):
        assignment = _take_uncertain(project, annotator)
    if assignment is None:
        assignment = _take(project, annotator)
    if assignment is not None:
        return Allocation(assignment)
    return Allocation(None, "quota" if _over_quota(project, annotator) else "done")


def gold_due(project: Project, annotator) -> bool:
    """Whether this annotator's next item should be a gold item. Their items are counted in
    blocks of 100 / rate (a rate of 10%: blocks of ten); one item of each block is gold, at a
    place that differs per block and per person, so nobody can learn the rhythm, and that is
    stable, so a reload changes nothing. A gold item that could not be served is owed until
    one can."""
    size = max(2, round(100 / project.gold_rate_percent))
    counts = _taken(project, annotator).aggregate(
        n=Count("id"), gold=Count("id", filter=Q(item__gold=True))
    )
    block, offset = divmod(counts["n"], size)
    place = zlib.crc32(f"{project.pk}:{annotator.pk}:{block}".encode()) % size
    return counts["gold"] < block + (offset >= place)


def _taken(project: Project, annotator):
    """This annotator's active and submitted assignments in the project (the quota's count)."""
    return Assignment.objects.filter(
        project=project,
        annotator=annotator,
        status__in=[Assignment.Status.ACTIVE, Assignment.Status.SUBMITTED],
    )


def _over_quota(project: Project, annotator) -> bool:
    quota = project.quota_per_annotator
    return quota is not None and _taken(project, annotator).count() >= quota


# The uncertain policy (see the module's docstring).
ACTIVE_WINDOW = 64  # items of the plain order it chooses among
FIT_EVERY_SECONDS = 30  # a project's fit is reused this long
FIT_JUDGMENTS = 20_000  # the fit reads the project's most recent judgments, at most this many
_coin = random.Random()  # noqa: S311 (choosing an order, not a secret)


def explore(project: Project) -> bool:
    """Whether this item comes in the plain order: true at ``active_random_percent``."""
    return _coin.random() * 100 < project.active_random_percent


def source_of(model: str, source: str, source_key: str) -> str:
    """A candidate's source for the uncertain policy: its variant."""
    return f"{model}|{source}|{source_key}"


def project_fit(project: Project) -> bradley_terry.Fit | None:
    """The Bradley–Terry fit of the project's sources (θ and its covariance), from its most
    recent FIT_JUDGMENTS judgments that name a chosen and a rejected candidate (one
    aggregate query), cached for FIT_EVERY_SECONDS; None before any such judgment. Ties
    are left out of this quick fit (naming their candidates would need the items'): they
    would only make pairs look closer, which the fit's prior does too."""
    key = f"chosen:bt:{project.pk}"
    cached = cache.get(key)
    if cached is not None:
        return cached[0]
    recent = Judgment.objects.filter(project=project).order_by("-id").values("id")[:FIT_JUDGMENTS]
    rows = (
        Judgment.objects.filter(id__in=recent, chosen__isnull=False, rejected__isnull=False)
        .values(
            "chosen__model",
            "chosen__source",
            "chosen__source_key",
            "rejected__model",
            "rejected__source",
            "rejected__source_key",
        )
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict = {}
    for row in rows:
        winner = source_of(row["chosen__model"], row["chosen__source"], row["chosen__source_key"])
        loser = source_of(
            row["rejected__model"], row["rejected__source"], row["rejected__source_key"]
        )
        if winner != loser:
            counts[(winner, loser, 1.0)] = counts.get((winner, loser, 1.0), 0) + row["n"]
    fitted = bradley_terry.fit_strengths(counts)
    cache.set(key, (fitted,), FIT_EVERY_SECONDS)
    return fitted


def _take_uncertain(project: Project, annotator) -> Assignment | None:
    """The uncertain policy's pick among the next ACTIVE_WINDOW items of the plain order
    (two small reads, no lock), then taken by the one statement; None when the window is
    empty or a parallel request took all of it (the caller falls back to the plain order)."""
    had = Assignment.objects.filter(item_id=OuterRef("pk"), annotator=annotator)
    window = list(
        Item.objects.filter(
            project=project, gold=False, assignment_count__lt=F("target_annotations")
        )
        .exclude(Exists(had))
        .order_by("assignment_count", "random_order", "id")
        .values_list("id", "candidate_key")[:ACTIVE_WINDOW]
    )
    if len(window) < 2:
        return None
    ids = {int(c) for _, key in window for c in key.split("-")}
    sources = {
        pk: source_of(model, source, key)
        for pk, model, source, key in Candidate.objects.filter(pk__in=ids).values_list(
            "id", "model", "source", "source_key"
        )
    }
    options = [[sources.get(int(c), "") for c in key.split("-")] for _, key in window]
    order = bradley_terry.most_uncertain_first(options, project_fit(project))
    return _take(project, annotator, preferred=[window[i][0] for i in order])


def _take(
    project: Project, annotator, *, gold: bool = False, preferred: list[int] | None = None
) -> Assignment | None:
    """The open assignment, or a new one, in one statement (``_take_sql``); ``preferred``:
    only these items, in this order."""
    with connection.cursor() as cursor:
        cursor.execute(
            _take_sql(gold, preferred is not None), _take_params(project, annotator, preferred)
        )
        row = cursor.fetchone()
    if row is None:
        return None
    assignment, item, item.prompt = sqlrows.split(row, (Assignment, Item, Prompt))
    assignment.item, assignment.project, assignment.annotator = item, project, annotator
    return assignment


def _deadline(project: Project):
    return timezone.now() + timedelta(minutes=project.assignment_timeout_minutes)


# The hot path of every submit, one statement and one round trip:
# - ``current``: the annotator's open assignment in the project (a reload shows it again);
# - otherwise, within the quota, the subquery walks item_allocation_idx in allocation order
#   and locks the first free item this person never had (SKIP LOCKED sends parallel requests
#   to different rows); the UPDATE raises its count and the INSERT makes the assignment with
#   the item's candidates in a shuffled display order;
# - either way the assignment, its item and the prompt come back as one row. A new row is
#   read from RETURNING: a statement's own writes are invisible to its table scans.


def _take_params(project: Project, annotator, preferred: list[int] | None = None) -> dict:
    return {
        "preferred": preferred,
        "project": project.pk,
        "annotator": annotator.pk,
        "organization": project.organization_id,
        "expires": _deadline(project),
        "quota": project.quota_per_annotator,
        "active": Assignment.Status.ACTIVE,
        "taken": [Assignment.Status.ACTIVE, Assignment.Status.SUBMITTED],
    }


@functools.cache
def _take_sql(gold: bool = False, preferred: bool = False) -> str:
    item, prompt = Item._meta.db_table, Prompt._meta.db_table
    assignment = Assignment._meta.db_table
    columns = sqlrows.columns

    # Gold items: every annotator sees each one once (no overlap target), in an order of
    # their own (random_order XOR the annotator's id), read from the partial item_gold_idx.
    if gold:
        which, order = "i.gold", "(i.random_order # %(annotator)s), i.id"
    else:
        which = "NOT i.gold AND i.assignment_count < i.target_annotations"
        order = "i.assignment_count, i.random_order, i.id"
    if preferred:  # the uncertain policy's choice: these items only, most uncertain first
        which += " AND i.id = ANY(%(preferred)s::bigint[])"
        order = "array_position(%(preferred)s::bigint[], i.id::bigint)"
    # Only table and column names from the models are formatted in; values are parameters.
    return f"""
WITH current AS (
    SELECT id FROM {assignment}
    WHERE project_id = %(project)s AND annotator_id = %(annotator)s AND status = %(active)s
    ORDER BY created_at DESC LIMIT 1
), picked AS (
    UPDATE {item} SET assignment_count = assignment_count + 1
    WHERE id = (
        SELECT i.id FROM {item} i
        WHERE NOT EXISTS (SELECT 1 FROM current)
          AND (%(quota)s::integer IS NULL OR %(quota)s::integer > (
              SELECT count(*) FROM {assignment} q
              WHERE q.project_id = %(project)s AND q.annotator_id = %(annotator)s
                AND q.status = ANY(%(taken)s)))
          AND i.project_id = %(project)s AND {which}
          AND NOT EXISTS (
              SELECT 1 FROM {assignment} a
              WHERE a.item_id = i.id AND a.annotator_id = %(annotator)s)
        ORDER BY {order}
        LIMIT 1
        FOR UPDATE SKIP LOCKED)
    RETURNING {columns(None, Item)}
), made AS (
    INSERT INTO {assignment}
        (organization_id, project_id, item_id, annotator_id, status, display_order,
         skip_reason, created_at, expires_at)
    SELECT %(organization)s, %(project)s, picked.id, %(annotator)s, %(active)s,
        (SELECT jsonb_agg(c::integer ORDER BY random())
         FROM unnest(string_to_array(picked.candidate_key, '-')) c),
        '', now(), %(expires)s
    FROM picked
    RETURNING {columns(None, Assignment)}
)
SELECT {columns("made", Assignment)}, {columns("picked", Item)}, {columns("p", Prompt)}
FROM made JOIN picked ON picked.id = made.item_id JOIN {prompt} p ON p.id = picked.prompt_id
UNION ALL
SELECT {columns("a", Assignment)}, {columns("i", Item)}, {columns("p", Prompt)}
FROM current JOIN {assignment} a ON a.id = current.id JOIN {item} i ON i.id = a.item_id
JOIN {prompt} p ON p.id = i.prompt_id
"""  # noqa: S608
