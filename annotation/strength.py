"""Graded preference: the signed strength of a judgment and its mean over an item.

A project asks for strength when its preference labels carry one (``tasks.schema``:
"A slightly / clearly / much better", 1..``strength_levels``). A judgment keeps the strength
of the label that was clicked; what it says about the item is its **signed strength**, on a
scale from -levels to +levels:

- ``+s`` when the item's first candidate ("A" of the item, not of the screen) was preferred
  with strength s, ``-s`` when its second one was;
- ``0`` for a tie;
- ``None`` for both bad, for a judgment without a strength, and outside pairwise items.

The item's first candidate is the first of its stored candidates: the smallest id of its
``candidate_key``, which is also its slot 0 as ``tasks.items`` builds items, "Candidate 1" on
the review page and category "1" of the QC report. The letters an annotator saw are
randomized per assignment (``Assignment.display_order``) and play no part: the judgment's
``chosen_id`` is already a resolved candidate.

The signs follow TRL's reward trainer, whose ``margin`` column (after Llama 2's graded
scale) is the strength with which ``chosen`` beats ``rejected``: an export takes
``abs(signed)`` as the margin of the pair it writes. The per-item mean over annotators is
what the review page shows and what the QC report's ordinal agreement is computed from.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from annotation.models import Judgment
from tasks.models import Item, Project
from tasks.schema import strength_levels

# Words for the usual three levels; other scales are shown as "2 of 5".
WORDS = {1: "slightly better", 2: "clearly better", 3: "much better"}


def first_candidate(candidate_key: str) -> int | None:
    """The item's first candidate id, from its ``candidate_key`` ("12-57" → 12)."""
    head = (candidate_key or "").split("-", 1)[0]
    return int(head) if head.isdigit() else None


def signed_strength(
    *, outcome: str, chosen_id: int | None, strength: int | None, first_id: int | None
) -> int | None:
    """The judgment's strength signed towards the item's first candidate (see the module's
    docstring): +strength, -strength, 0 for a tie, None when it has none."""
    if outcome == Judgment.Outcome.TIE:
        return 0
    if outcome != Judgment.Outcome.PREFERRED or not strength or chosen_id is None:
        return None
    if first_id is None:
        return None
    return strength if chosen_id == first_id else -strength


def judgment_signed_strength(judgment: Judgment, item: Item | None = None) -> int | None:
    """``signed_strength`` of a stored judgment (its item read unless given)."""
    item = item or judgment.item
    return signed_strength(
        outcome=judgment.outcome,
        chosen_id=judgment.chosen_id,
        strength=judgment.strength,
        first_id=first_candidate(item.candidate_key),
    )


def mean(values: Iterable[int | None]) -> float | None:
    """The mean of the signed strengths that exist; None without any."""
    found = [v for v in values if v is not None]
    return sum(found) / len(found) if found else None


def in_words(value: float | None, levels: int, first: str = "A", second: str = "B") -> str:
    """A signed strength (or a mean of them) in words: "B clearly better", "about equal".
    ``first`` / ``second`` name the item's two candidates."""
    if value is None:
        return "no strength given"
    level = min(levels, int(abs(value) + 0.5))  # half rounds up: 1.5 is "clearly"
    if level == 0:
        return "about equal"
    side = first if value > 0 else second
    words = WORDS[level] if levels == 3 else f"better by {level} of {levels}"
    return f"{side} {words}"


def signed_text(value: float | None) -> str:
    """A signed number as the review page writes it: "+2", "−1.7" (a true minus), "0"."""
    if value is None:
        return "–"
    shown = f"{abs(value):.1f}".removesuffix(".0")
    if shown == "0":
        return "0"
    return ("+" if value > 0 else "\u2212") + shown


@dataclass(frozen=True)
class ItemStrength:
    """The graded preference of one item: each judgment's signed strength and their mean,
    on the scale -levels..+levels."""

    levels: int
    signed: dict[int, int | None]  # judgment id -> signed strength
    mean: float | None
    count: int  # judgments with a signed strength

    def summary(self, first: str = "A", second: str = "B") -> str:
        """ "B clearly better, mean −1.7 of 3 (3 judgments)"."""
        if self.mean is None:
            return "No judgment gave a strength."
        n = f"{self.count} judgment{'s' if self.count != 1 else ''}"
        return (
            f"{in_words(self.mean, self.levels, first, second)}, mean "
            f"{signed_text(self.mean)} of {self.levels} ({n})"
        )


def item_strength(
    project: Project, item: Item, judgments: Iterable[Judgment]
) -> ItemStrength | None:
    """The item's graded preference, or None when the project does not ask for strength."""
    levels = strength_levels(project.preference_question)
    if levels is None or item.mode != Project.Mode.PAIRWISE:
        return None
    signed = {j.pk: judgment_signed_strength(j, item) for j in judgments}
    found = [v for v in signed.values() if v is not None]
    return ItemStrength(levels, signed, mean(found), len(found))


def mean_by_item(project: Project, item_ids: Iterable[int]) -> dict[int, float | None]:
    """The mean signed strength of each of these items of the project (one query), for
    lists of items such as the review queue. Items without a signed judgment are left out."""
    ids = list(item_ids)
    if not ids or strength_levels(project.preference_question) is None:
        return {}
    values: dict[int, list[int]] = defaultdict(list)
    rows = Judgment.objects.filter(project=project, item_id__in=ids).values_list(
        "item_id", "outcome", "chosen_id", "strength", "item__candidate_key"
    )
    for item_id, outcome, chosen_id, strength, key in rows:
        value = signed_strength(
            outcome=outcome,
            chosen_id=chosen_id,
            strength=strength,
            first_id=first_candidate(key),
        )
        if value is not None:
            values[item_id].append(value)
    return {item_id: mean(found) for item_id, found in values.items()}
