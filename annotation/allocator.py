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
"""

import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from annotation.models import Assignment
from tasks.models import Item, Project

_shuffle = random.SystemRandom().shuffle


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
    with transaction.atomic():
        mine = Assignment.objects.filter(project=project, annotator=annotator)
        current = (
            mine.filter(status=Assignment.Status.ACTIVE).select_related("item__prompt").first()
        )
        if current is not None:
            return Allocation(current)
        if project.quota_per_annotator is not None and (
            mine.filter(status__in=[Assignment.Status.ACTIVE, Assignment.Status.SUBMITTED]).count()
            >= project.quota_per_annotator
        ):
            return Allocation(None, "quota")
        had = Assignment.objects.filter(item=OuterRef("pk"), annotator=annotator)
        item = (
            Item.objects.select_related("prompt")
            .filter(project=project, assignment_count__lt=F("target_annotations"))
            .filter(~Exists(had))
            .order_by("assignment_count", "random_order", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if item is None:
            return Allocation(None, "done")
        order = [int(pk) for pk in item.candidate_key.split("-")]  # the item's candidates
        _shuffle(order)
        assignment = Assignment.objects.create(
            organization_id=project.organization_id,
            project=project,
            item=item,
            annotator=annotator,
            display_order=order,
            expires_at=timezone.now() + timedelta(minutes=project.assignment_timeout_minutes),
        )
        Item.objects.filter(pk=item.pk).update(assignment_count=F("assignment_count") + 1)
        return Allocation(assignment)
