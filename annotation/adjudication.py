"""Disagreements and how a project settles them: the queue of items whose judgments differ,
the lead's final decision with a note (the item's resolved preference for exports), the
discussion of an item, and gold items (attention checks with a known answer).

The seed guide: "Resolve disagreements through discussion, not majority vote — the goal is
to clarify the standard, not to paper over inconsistencies."
"""

from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, TextField, Value
from django.db.models.functions import Cast, Coalesce, Concat

from annotation.models import Adjudication, ItemNote, Judgment
from annotation.verification import settle
from tasks.audit import Action, diff, record
from tasks.models import Candidate, Item, Project

Outcome = Judgment.Outcome
NOTE_MAX = 10_000


def opinion():
    """A judgment's decision as one comparable string: outcome, chosen, rejected, ranking.
    Two judgments disagree when these differ (screen positions play no part: the ids are
    resolved candidates)."""

    def text(name):
        return Coalesce(Cast(F(name), TextField()), Value("", output_field=TextField()))

    colon = Value(":", output_field=TextField())
    return Concat(
        text("outcome"),
        colon,
        text("chosen_id"),
        colon,
        text("rejected_id"),
        colon,
        text("ranking"),
        output_field=TextField(),
    )


def disputed_item_ids(project: Project):
    """Ids of the items with at least two judgments that do not all say the same (a values
    queryset, to use as a subquery)."""
    return (
        Judgment.objects.filter(project=project)
        .values("item_id")
        .annotate(opinions=Count(opinion(), distinct=True))
        .filter(opinions__gt=1)
        .values("item_id")
    )


QUEUES = {
    "open": "Disputed, not decided",
    "decided": "Decided",
    "gold": "Gold items",
    "all": "All items",
}


def review_queue(project: Project, which: str = "open", search: str = ""):
    """Items for the lead's review page, oldest first, with their judgment counts."""
    items = Item.objects.filter(project=project)
    decided = Exists(Adjudication.objects.filter(item=OuterRef("pk")))
    if which == "open":
        items = items.filter(pk__in=disputed_item_ids(project)).exclude(decided)
    elif which == "decided":
        items = items.filter(decided)
    elif which == "gold":
        items = items.filter(gold=True)
    if search:
        items = items.filter(Q(prompt__external_id=search) | Q(prompt__text__icontains=search))
    return (
        items.select_related("prompt", "adjudication")
        .annotate(
            judged=Count("judgments", distinct=True), notes_count=Count("notes", distinct=True)
        )
        .order_by("id")
    )


def next_open(project: Project, after_id: int) -> Item | None:
    """The next disputed item without a decision after this one (then from the start)."""
    queue = review_queue(project, "open")
    return queue.filter(pk__gt=after_id).first() or queue.exclude(pk=after_id).first()


@dataclass
class Seen:
    """A judgment as the review page shows it: the candidates named by their number on the
    review page (1..N in the item's order), and the letter the annotator saw."""

    judgment: Judgment
    choice: str
    shown_as: str
    ranking: list[int] = field(default_factory=list)
    rubric: dict[int, dict] = field(default_factory=dict)
    answers: list[tuple[str, str]] = field(default_factory=list)
    # Graded preference (``annotation.strength``), filled in where the project asks for it:
    # the judgment's strength signed towards the item's first candidate, as text ("−2").
    signed: str = ""


def describe(record, mode: str, number: dict[int, int]) -> str:
    """A judgment or decision in words, naming candidates by their review-page number:
    "Candidate 2 over 1", "Best 2, worst 3", "Ranking 2 > 1 > 3", "Tie"."""
    if record.outcome in (Outcome.TIE, Outcome.BOTH_BAD):
        return record.get_outcome_display()

    def name(cid):
        return str(number.get(cid, "?"))

    if mode == Project.Mode.RANKING and record.ranking:
        return "Ranking " + " > ".join(name(cid) for cid in record.ranking)
    if mode == Project.Mode.BEST_WORST:
        return f"Best {name(record.chosen_id)}, worst {name(record.rejected_id)}"
    text = f"Candidate {name(record.chosen_id)}"
    return text + (f" over {name(record.rejected_id)}" if record.rejected_id else " preferred")


def item_candidates(item: Item) -> list[Candidate]:
    """The item's candidates in id order (the review page's numbering, and the QC report's
    categories "1", "2", …)."""
    ids = [int(pk) for pk in item.candidate_key.split("-") if pk]
    found = Candidate.objects.in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]


def judgments_seen(item: Item, candidates: list[Candidate]) -> list[Seen]:
    number = {c.pk: i for i, c in enumerate(candidates, start=1)}
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    seen = []
    for judgment in (
        Judgment.objects.filter(item=item)
        .select_related("annotator", "assignment")
        .order_by("created_at", "id")
    ):
        order = judgment.assignment.display_order
        shown_as = ""
        if judgment.chosen_id in order and item.mode == Project.Mode.PAIRWISE:
            shown_as = f"shown as {letters[order.index(judgment.chosen_id)]}"
        elif judgment.chosen_id in order:
            shown_as = f"shown in place {order.index(judgment.chosen_id) + 1}"
        seen.append(
            Seen(
                judgment,
                describe(judgment, item.mode, number),
                shown_as,
                [number.get(cid, 0) for cid in judgment.ranking],
                {
                    number.get(int(cid), 0): scores
                    for cid, scores in (judgment.rubric_scores or {}).items()
                },
                [
                    (name, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
                    for name, value in (judgment.answers or {}).items()
                ],
            )
        )
    return seen


def parse_decision(item: Item, candidates: list[Candidate], data) -> dict:
    """The decision fields of a review form (POST data), checked against the item: raises
    ValidationError naming the field."""
    ids = [c.pk for c in candidates]
    note = (data.get("note") or "").strip()
    errors = {}
    if not note:
        errors["note"] = "Say why: the note is what teaches the standard."
    elif len(note) > NOTE_MAX:
        errors["note"] = f"Keep the note under {NOTE_MAX} characters."
    fields: dict = {"note": note, "chosen": None, "rejected": None, "ranking": []}
    decision = data.get("decision") or ""
    if decision in (Outcome.TIE, Outcome.BOTH_BAD):
        fields["outcome"] = decision
    elif item.mode == Project.Mode.RANKING:
        try:
            ranks = {cid: int(data.get(f"rank_{cid}", "")) for cid in ids}
        except ValueError:
            ranks = {}
        if sorted(ranks.values()) != list(range(1, len(ids) + 1)):
            errors["decision"] = f"Give every candidate a different rank from 1 to {len(ids)}."
        else:
            ranking = sorted(ids, key=ranks.get)
            fields.update(
                outcome=Outcome.RANKED, ranking=ranking, chosen=ranking[0], rejected=ranking[-1]
            )
    elif item.mode == Project.Mode.BEST_WORST:
        best, worst = _candidate(data.get("best"), ids), _candidate(data.get("worst"), ids)
        if best is None or worst is None or best == worst:
            errors["decision"] = "Pick the best and a different worst candidate."
        else:
            fields.update(outcome=Outcome.RANKED, chosen=best, rejected=worst)
    else:
        chosen = _candidate(decision, ids)
        if chosen is None:
            errors["decision"] = "Pick the preferred candidate, a tie or both bad."
        else:
            rejected = next(cid for cid in ids if cid != chosen) if len(ids) == 2 else None
            fields.update(outcome=Outcome.PREFERRED, chosen=chosen, rejected=rejected)
    if errors:
        raise ValidationError(errors)
    return fields


def _candidate(value, ids: list[int]) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number in ids else None


@transaction.atomic
def decide(*, item: Item, lead, fields: dict) -> Adjudication:
    """Record (or replace) the final decision on an item."""
    values = {
        "organization_id": item.organization_id,
        "project_id": item.project_id,
        "outcome": fields["outcome"],
        "chosen_id": fields["chosen"],
        "rejected_id": fields["rejected"],
        "ranking": fields["ranking"],
        "note": fields["note"],
        "decided_by": lead,
    }
    previous = Adjudication.objects.filter(item=item).first()
    adjudication, _ = Adjudication.objects.update_or_create(item=item, defaults=values)
    record(
        Action.ADJUDICATION_DECIDED,
        organization=item.organization_id,
        obj=item,
        object_repr=f"item {item.pk}",
        changes=diff(_decision(previous), _decision(adjudication)),
        data={"project": item.project_id},
    )
    settle(project=item.project, items=[item.pk])
    return adjudication


def _decision(adjudication: Adjudication | None) -> dict:
    if adjudication is None:
        return {}
    return {
        "outcome": adjudication.outcome,
        "chosen": adjudication.chosen_id,
        "rejected": adjudication.rejected_id,
        "ranking": adjudication.ranking,
        "note": adjudication.note,
    }


@transaction.atomic
def add_note(*, item: Item, author, text: str) -> ItemNote:
    """A note in the item's discussion, on the trail with its words (the item is the
    object, as for its decision and gold answer)."""
    text = (text or "").strip()
    if not text:
        raise ValidationError({"text": "The note is empty."})
    if len(text) > NOTE_MAX:
        raise ValidationError({"text": f"Keep a note under {NOTE_MAX} characters."})
    note = ItemNote.objects.create(
        organization_id=item.organization_id,
        project_id=item.project_id,
        item=item,
        author=author,
        text=text,
    )
    record(
        Action.NOTE_ADDED,
        organization=item.organization_id,
        obj=item,
        object_repr=f"item {item.pk}",
        data={"project": item.project_id, "note": note.pk, "text": text},
    )
    return note


def set_gold(item: Item, answer: str, candidates: list[Candidate]) -> None:
    """Make the item a gold item with this expected answer (a candidate id, "tie" or
    "both_bad"), or an ordinary item again with an empty answer."""
    ids = [c.pk for c in candidates]
    if not answer:
        item.gold, item.gold_outcome, item.gold_chosen_id = False, "", None
    elif answer in (Outcome.TIE, Outcome.BOTH_BAD):
        item.gold, item.gold_outcome, item.gold_chosen_id = True, answer, None
    else:
        chosen = _candidate(answer, ids)
        if chosen is None:
            raise ValidationError({"gold": "The expected answer must be one of the candidates."})
        outcome = Outcome.PREFERRED if item.mode == Project.Mode.PAIRWISE else Outcome.RANKED
        item.gold, item.gold_outcome, item.gold_chosen_id = True, outcome, chosen
    item.save(update_fields=["gold", "gold_outcome", "gold_chosen"])
    record(
        Action.GOLD_SET,
        organization=item.organization_id,
        obj=item,
        object_repr=f"item {item.pk}",
        data={
            "project": item.project_id,
            "gold": item.gold,
            "outcome": item.gold_outcome,
            "chosen": item.gold_chosen_id,
        },
    )


def gold_correct(outcome: str, chosen_id, gold_outcome: str, gold_chosen_id) -> bool:
    """Whether a judgment gave a gold item's expected answer: the same tie / both-bad, or the
    same preferred (best) candidate."""
    if gold_outcome in (Outcome.TIE, Outcome.BOTH_BAD):
        return outcome == gold_outcome
    return outcome in (Outcome.PREFERRED, Outcome.RANKED) and chosen_id == gold_chosen_id


def may_read_discussion(membership, project: Project, item: Item, user) -> bool:
    """Leads always; an annotator who judged the item when the project shares discussions."""
    if membership.manages:
        return True
    return (
        project.discussion_visible_to_annotators
        and Judgment.objects.filter(item=item, annotator=user).exists()
    )
