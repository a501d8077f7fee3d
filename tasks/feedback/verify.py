"""Expert verification of machine-made pairs: a pair waiting for an expert (``to_verify``)
becomes a pairwise item of its project, judged like any other.

The item is an ordinary one: the two candidates in sorted-id slots (never chosen first: the
allocator shuffles the display order per assignment, and nothing on the item tells which
side the source preferred), ``target_annotations`` from the project's overlap policy,
``random_order`` as the item builder sets it, so the allocator hands it out with the rest.
Two pairs over the same two candidates (an edit and a correction saying the same, say)
share one item, and an item that already exists for them (built from the prompt's
candidates) is reused: ``Item`` is unique per project and candidate set.

How the experts' answers settle a pair is ``annotation.verification`` (judgments live on
the floor above).
"""

from django.db import transaction
from django.db.models import CharField, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Concat, Greatest, Least

from tasks.feedback.pairs import build_pairs
from tasks.items import candidate_key, insert_items
from tasks.models import Item, Project, SignalPair


class NotPairwise(ValueError):
    """Verification items compare two responses: the project must be pairwise."""


def _pair_key(chosen, rejected):
    """The item key of a pair's two candidates, in SQL (``tasks.items.candidate_key``)."""
    return Concat(
        Cast(Least(chosen, rejected), CharField()),
        Value("-"),
        Cast(Greatest(chosen, rejected), CharField()),
        output_field=CharField(),
    )


@transaction.atomic
def queue_for_verification(*, project: Project) -> int:
    """Give every pair of the project that waits for an expert and has no item one; return
    how many items were created (0 on a second run: it is idempotent).

    The project row is locked meanwhile, so two runs at once create each item once.
    Raises NotPairwise for a best/worst or ranking project.
    """
    project = Project.objects.select_for_update().get(pk=project.pk)
    if project.mode != Project.Mode.PAIRWISE:
        raise NotPairwise(
            "Verification items compare two responses: use a pairwise project (the "
            '"Verify machine-made pairs" template).'
        )
    waiting = SignalPair.objects.filter(
        project=project, status=SignalPair.Status.TO_VERIFY, item__isnull=True
    )
    wanted: dict[str, tuple[int, int, int]] = {}
    for prompt_id, chosen_id, rejected_id in waiting.values_list(
        "prompt_id", "chosen_id", "rejected_id"
    ).iterator(chunk_size=5000):
        pair = tuple(sorted((chosen_id, rejected_id)))
        wanted.setdefault(candidate_key(pair), (prompt_id, *pair))
    existing = set(
        Item.objects.filter(project=project, candidate_key__in=list(wanted)).values_list(
            "candidate_key", flat=True
        )
    )
    missing = [(key, wanted[key]) for key in wanted if key not in existing]
    item_ids = insert_items(
        project, [(prompt_id, tuple(pair)) for _, (prompt_id, *pair) in missing]
    )
    item_of_pair = Item.objects.filter(
        project=project,
        candidate_key=_pair_key(OuterRef("chosen_id"), OuterRef("rejected_id")),
    ).values("pk")[:1]
    waiting.update(item_id=Subquery(item_of_pair, output_field=IntegerField()))
    return len(item_ids)


def build_and_queue(*, project: Project) -> dict:
    """The pairs of the project's signals (``build_pairs``' counts), and items for those
    experts must check (``queued``; none in a project that is not pairwise, with the reason
    in ``not_queued``). What a feedback import, ``manage.py build_pairs`` and the API run."""
    counts = build_pairs(project=project)
    try:
        counts["queued"] = queue_for_verification(project=project)
    except NotPairwise as refused:
        counts["queued"], counts["not_queued"] = 0, str(refused)
    return counts
