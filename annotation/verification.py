"""What experts' answers make of a machine-made pair (``tasks.models.SignalPair``) that was
queued for verification (``tasks.feedback.verify``), and what the annotate page reveals of
the pair's source once an expert has answered.

Settling a pair from its item (``settle``), once the item has its target number of
judgments, or as soon as a lead has decided it:

- a lead's decision (adjudication) wins: the pair's direction → ``confirmed``, the other
  → ``flipped``, a tie or both bad → ``rejected``;
- otherwise more than half of the item's judgments prefer the pair's chosen response →
  ``confirmed``; more than half prefer the other → ``flipped``; more than half call it a tie
  or reject both → ``rejected`` (neither response teaches a preference: not exported);
- no majority (one for, one against): the pair stays ``to_verify``; the item is disputed,
  so it waits in the review queue for a lead's decision.

It is a recomputation from the judgments, so it is idempotent and also undoes itself: a
judgment undone or edited settles the pair again (back to ``to_verify`` if the item lost
its target number).
"""

from collections import Counter, defaultdict

from django.db import transaction

from annotation.models import Adjudication, Judgment
from tasks.models import Project, SignalPair

VERIFIED = (
    SignalPair.Status.TO_VERIFY,
    SignalPair.Status.CONFIRMED,
    SignalPair.Status.FLIPPED,
    SignalPair.Status.REJECTED,
)
LETTERS = "AB"


def _verdict(outcome: str, chosen_id, rejected_id, pair: SignalPair) -> str:
    """One judgment's (or decision's) answer to a pair: agree, flip or reject."""
    if outcome == Judgment.Outcome.PREFERRED:
        if (chosen_id, rejected_id) == (pair.chosen_id, pair.rejected_id):
            return "agree"
        if (chosen_id, rejected_id) == (pair.rejected_id, pair.chosen_id):
            return "flip"
    return "reject"


def outcome_of(pair: SignalPair, judgments: list[tuple], target: int, decision=None) -> str:
    """The pair's status from its item's judgments ``(outcome, chosen_id, rejected_id)``,
    the item's target number of judgments and a lead's decision (an Adjudication)."""
    statuses = {
        "agree": SignalPair.Status.CONFIRMED,
        "flip": SignalPair.Status.FLIPPED,
        "reject": SignalPair.Status.REJECTED,
    }
    if decision is not None:
        return statuses[_verdict(decision.outcome, decision.chosen_id, decision.rejected_id, pair)]
    if not judgments or len(judgments) < target:
        return SignalPair.Status.TO_VERIFY
    votes = Counter(_verdict(*row, pair) for row in judgments)
    verdict, n = votes.most_common(1)[0]
    return statuses[verdict] if n * 2 > len(judgments) else SignalPair.Status.TO_VERIFY


# No savepoint when called inside a submit's transaction (two round trips fewer per
# submit): an error here fails the whole submit anyway.
@transaction.atomic(savepoint=False)
def settle(*, project: Project, items: list[int] | None = None) -> int:
    """Set the status of the project's verified pairs (of ``items`` only, when given) from
    their items' judgments; return how many changed.

    The pairs are locked first: two experts submitting the same item at once settle it one
    after the other, and the second sees the first's judgment.
    """
    pairs = SignalPair.objects.select_for_update().filter(
        project=project, item__isnull=False, status__in=VERIFIED
    )
    if items is not None:
        pairs = pairs.filter(item_id__in=items)
    pairs = list(pairs.select_related("item").order_by("pk"))
    if not pairs:
        return 0
    item_ids = {pair.item_id for pair in pairs}
    judged: dict[int, list[tuple]] = defaultdict(list)
    for item_id, *row in Judgment.objects.filter(item_id__in=item_ids).values_list(
        "item_id", "outcome", "chosen_id", "rejected_id"
    ):
        judged[item_id].append(tuple(row))
    decisions = {a.item_id: a for a in Adjudication.objects.filter(item_id__in=item_ids)}
    changed: dict[str, list[int]] = defaultdict(list)
    for pair in pairs:
        status = outcome_of(
            pair, judged[pair.item_id], pair.item.target_annotations, decisions.get(pair.item_id)
        )
        if status != pair.status:
            changed[status].append(pair.pk)
    for status, ids in changed.items():
        SignalPair.objects.filter(pk__in=ids).update(status=status)
    return sum(len(ids) for ids in changed.values())


# An item's pairs, locked as ``settle`` locks them. Written out: most items verify no pair,
# and the ORM's version of this probe cost more CPU than the rest of the check.
_ITEM_PAIRS = """
SELECT * FROM tasks_signalpair WHERE item_id = %s AND organization_id = %s ORDER BY id FOR UPDATE
"""


def settle_judged(judgment: Judgment) -> list[SignalPair]:
    """``settle`` after a judgment was stored: the pairs of its item, if it has any, are
    settled. Returns the item's pairs (``reveal``'s), an empty list for most items."""
    pairs = list(SignalPair.objects.raw(_ITEM_PAIRS, [judgment.item_id, judgment.organization_id]))
    if pairs:
        settle(project=judgment.project, items=[judgment.item_id])
    return pairs


def reveal(judgment: Judgment, pairs: list[SignalPair] | None = None) -> str:
    """What the source said about the pair an expert just judged, and whether the expert
    agreed; empty for an item that verifies no pair. Shown only after the answer, so the
    source cannot sway it. ``pairs``: the item's pairs, when the caller has read them."""
    if pairs is None:
        pairs = list(SignalPair.objects.filter(item_id=judgment.item_id).order_by("pk"))
    if not pairs:
        return ""
    order = judgment.assignment.display_order
    said = []
    for pair in pairs:
        letter = LETTERS[order.index(pair.chosen_id)] if pair.chosen_id in order else "?"
        verdict = _verdict(judgment.outcome, judgment.chosen_id, judgment.rejected_id, pair)
        if verdict == "agree":
            answer = "you agreed"
        elif verdict == "flip":
            answer = "you flipped it"
        elif judgment.outcome == Judgment.Outcome.TIE:
            answer = "you called it a tie, so the pair is dropped"
        else:
            answer = "you rejected both, so the pair is dropped"
        said.append(
            f"The source said Response {letter} is better ({pair.get_rule_display()}, "
            f"confidence {pair.confidence:.0%}: {pair.reason}); {answer}."
        )
    return " ".join(said)


def revealed_for(judgments) -> dict[int, str]:
    """``reveal`` of each of these judgments that verified a pair, by judgment id (the
    history page: one query for all their pairs)."""
    by_item: dict[int, list[SignalPair]] = defaultdict(list)
    for pair in SignalPair.objects.filter(item_id__in={j.item_id for j in judgments}).order_by(
        "pk"
    ):
        by_item[pair.item_id].append(pair)
    return {j.pk: reveal(j, by_item[j.item_id]) for j in judgments if j.item_id in by_item}
