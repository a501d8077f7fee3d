"""Items: what one annotator sees at once, built from a prompt's candidates.

``pairwise`` makes one item per pair of candidates (or a sample of ``pairs_per_prompt``
pairs); ``best_worst`` and ``ranking`` make one item of all N candidates. Building is
incremental and idempotent: an item is identified by its sorted candidate ids, so running
the builder again after candidates arrive only adds what is missing.
"""

import random
import zlib
from collections.abc import Iterable
from itertools import combinations

from django.utils import timezone

from tasks import dbstats
from tasks.importers import bulk
from tasks.models import Candidate, Item, ItemCandidate, Project


def candidate_key(candidate_ids: Iterable[int]) -> str:
    return "-".join(str(i) for i in sorted(candidate_ids))


def _stable_int(*parts) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def target_annotations(project: Project, key: str) -> int:
    """Annotations wanted for an item: the project's overlap, or the agreement sample's for
    the (deterministically chosen) agreement_sample_percent of items."""
    if project.agreement_sample_percent and (
        _stable_int(project.pk, key, "sample") % 100 < project.agreement_sample_percent
    ):
        return project.agreement_sample_annotations
    return project.annotations_per_item


def plan_items(
    project: Project, prompt_id: int, candidate_ids: list[int], existing: set[str]
) -> list[tuple[int, ...]]:
    """Candidate sets of the items a prompt still needs, given the keys it already has."""
    ids = sorted(set(candidate_ids))
    if len(ids) < 2:
        return []
    if project.mode != Project.Mode.PAIRWISE:
        return [] if candidate_key(ids) in existing else [tuple(ids)]
    missing = [pair for pair in combinations(ids, 2) if candidate_key(pair) not in existing]
    if project.pairs_per_prompt:
        room = project.pairs_per_prompt - len(existing)
        if room <= 0:
            return []
        if len(missing) > room:
            rng = random.Random(_stable_int(project.pk, prompt_id))  # noqa: S311 (sampling, not security)
            missing = rng.sample(missing, room)
    return missing


def build_items(
    project: Project, candidates_by_prompt: dict[int, list[int]], *, fresh: bool = False
) -> int:
    """Create the items these prompts are missing; return how many were created.

    ``fresh`` says the prompts are new (no items yet), which saves a query. For best_worst /
    ranking, a prompt's N-item that nobody has started is replaced by one with all
    candidates; an item already assigned stays as it is.
    """
    prompt_ids = list(candidates_by_prompt)
    existing: dict[int, set[str]] = {}
    if not fresh:
        if project.mode != Project.Mode.PAIRWISE:
            dbstats.by_key_in_project(
                Item.objects.filter(prompt_id__in=prompt_ids, assignment_count=0), project.pk
            ).delete()
        existing = _existing_keys(project, prompt_ids)
    planned = [
        (prompt_id, chosen)
        for prompt_id, ids in candidates_by_prompt.items()
        for chosen in plan_items(project, prompt_id, ids, existing.get(prompt_id, set()))
    ]
    return len(insert_items(project, planned))


def insert_items(project: Project, planned: list[tuple[int, tuple[int, ...]]]) -> list[int]:
    """Insert an item for each (prompt id, candidate ids in slot order) and its slots, in
    bulk; return the new items' ids (in the order given)."""
    now = timezone.now()
    item_ids = bulk.insert(
        Item,
        [
            "organization_id",
            "project_id",
            "prompt_id",
            "mode",
            "candidate_key",
            "target_annotations",
            "assignment_count",
            "random_order",
            "created_at",
        ],
        [
            (
                project.organization_id,
                project.pk,
                prompt_id,
                project.mode,
                key,
                target_annotations(project, key),
                0,
                _stable_int(project.pk, key),
                now,
            )
            for prompt_id, chosen in planned
            for key in [candidate_key(chosen)]
        ],
    )
    bulk.insert(
        ItemCandidate,
        ["item_id", "candidate_id", "position"],
        [
            (item_id, cid, position)
            for item_id, (_, chosen) in zip(item_ids, planned, strict=True)
            for position, cid in enumerate(chosen)
        ],
    )
    return item_ids


def _existing_keys(project: Project, prompt_ids: list[int]) -> dict[int, set[str]]:
    keys: dict[int, set[str]] = {}
    for prompt_id, key in dbstats.by_key_in_project(
        Item.objects.filter(prompt_id__in=prompt_ids), project.pk
    ).values_list("prompt_id", "candidate_key"):
        keys.setdefault(prompt_id, set()).add(key)
    return keys


def rebuild_items(project: Project, prompt_ids: list[int]) -> int:
    """Add the items these prompts are missing (after new candidates arrived)."""
    by_prompt: dict[int, list[int]] = {pid: [] for pid in prompt_ids}
    for prompt_id, cid in Candidate.objects.filter(prompt_id__in=prompt_ids).values_list(
        "prompt_id", "id"
    ):
        by_prompt[prompt_id].append(cid)
    return build_items(project, by_prompt)
