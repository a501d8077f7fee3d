"""Preference pairs from a project's judgments: extraction rules, aggregation across the
annotators of an item, filters, the train / validation / test split, and the provenance
every pair keeps.

Extraction (per judgment, on resolved candidate ids):
- pairwise: preferred → chosen, the other → rejected;
- best / worst: best vs worst, or best vs every other (``best_vs_all``, when the full
  order is known);
- ranking: the top vs each lower one, or every ordered pair (``ranking_pairs="all"``);
- rubric: with ``rubric_margin``, also pairs whose total rubric score differs by at least
  the margin (the seed guide's rating-based pairs); the higher total is chosen.
Ties and both-bad give no pair; a both-bad item gives each of its candidates as an
undesirable completion for the unpaired (KTO) format, under the same aggregation rule.

Aggregation over the judgments of one item is decided pair by pair: for candidates a and b,
the share of the item's judgments that say a > b is the pair's agreement (a tie, or a
judgment that does not order the two, counts in the total for neither side):
- ``all``: one row per judgment and pair;
- ``unanimous``: every judgment of the item says a > b;
- ``majority``: more than half of them, and at least ``min_agreement``;
- ``adjudicated``: a lead's final decision on the item wins (agreement 1.0); items without
  one are taken when unanimous.

Machine-made pairs (``tasks.models.SignalPair``, built from feedback logs, A/B tests,
grades and corrections) join the judgments' pairs: ``accepted`` and ``confirmed`` ones as
they are, ``flipped`` ones reversed; ``to_verify``, ``contradicted`` and ``rejected`` ones
never. The judgments of their verification items make no pair of their own (the experts'
verdict is the signal pair's status, ``annotation.verification``). Every pair carries its
``source`` (the rule, or ``human`` for a pair from judgments) and its ``confidence``:
- a pair from judgments: its agreement (1.0 when a lead decided the item);
- an accepted pair (no expert saw it): the rule's confidence;
- a confirmed or flipped pair: the share of its experts who stated the exported direction
  (1.0 with one expert, or when a lead decided); its agreement is the same share.
An accepted pair has no judgments: its agreement is its confidence, ``min_agreement`` does
not apply to it, and the card's mean agreement leaves it out. ``pair_sources`` keeps the
pairs of those sources only, ``min_confidence`` the pairs at least that confident. The
judgments' ``policy`` does not apply to verified pairs: their majority rule is settle's.

Streaming and determinism: judgments are read in chunks, ordered by prompt in a shuffled
order fixed by the seed (md5 of seed and prompt id), then item and judgment; signal pairs
in the same order, merged in. The split is
by prompt rank in that order, so no prompt is in two splits, the split sizes follow the
ratios exactly (in prompts) and nothing but a counter is held in memory.
"""

import heapq
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import combinations

from django.db import connection
from django.db.models import Exists, F, Func, OuterRef, TextField, Value
from django.db.models.functions import Cast, Concat

from annotation.models import Adjudication, Judgment
from tasks.models import Candidate, Project, Prompt, Rule, SignalPair
from tasks.text import text_similarity

POLICIES = ("adjudicated", "unanimous", "majority", "all")
CONVERSATIONS = ("refuse", "transcript")
RANKING_PAIRS = ("top", "all")
SPLITS = ("train", "validation", "test")
HUMAN = "human"  # the source of a pair from judgments
# A pair's source: a pair-builder rule (the KTO-only "rating" makes no pair) or people.
PAIR_SOURCES = (*(rule for rule in Rule.values if rule != Rule.RATING), HUMAN)
EXPORTED = (
    SignalPair.Status.ACCEPTED,
    SignalPair.Status.CONFIRMED,
    SignalPair.Status.FLIPPED,
)


@dataclass(frozen=True)
class Options:
    policy: str = "adjudicated"
    min_agreement: float = 0.0
    best_vs_all: bool = False
    ranking_pairs: str = "top"
    rubric_margin: float | None = None
    dimension: str = ""  # "question=value", e.g. "alignment_dimension=helpful"
    sources: tuple[str, ...] = ()  # candidate sources allowed on both sides; empty: any
    exclude_truncated: bool = False
    near_identical: float | None = None  # drop pairs whose texts are at least this similar
    exclude_contradictory: bool = False
    ratios: tuple[float, ...] = (0.8, 0.2)  # train, validation[, test]
    seed: int = 0
    # Formats with one prompt string (trl, kto, csv): a conversation is refused or written
    # as a plain transcript (exports.formats). CSV cells as stored, without formula escaping.
    conversation: str = "refuse"
    csv_raw: bool = False
    # Where a pair comes from (PAIR_SOURCES; empty: any) and how sure it is, 0..1.
    pair_sources: tuple[str, ...] = ()
    min_confidence: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.policy not in POLICIES:
            found.append(f"policy must be one of {', '.join(POLICIES)}")
        if self.conversation not in CONVERSATIONS:
            found.append(f"conversation must be one of {', '.join(CONVERSATIONS)}")
        if self.ranking_pairs not in RANKING_PAIRS:
            found.append(f"ranking_pairs must be one of {', '.join(RANKING_PAIRS)}")
        if not 0 <= self.min_agreement <= 1:
            found.append("min_agreement must be between 0 and 1")
        if not 0 <= self.min_confidence <= 1:
            found.append("min_confidence must be between 0 and 1")
        unknown = sorted(set(self.pair_sources) - set(PAIR_SOURCES))
        if unknown:
            found.append(
                f"unknown pair source(s) {', '.join(unknown)}: use {', '.join(PAIR_SOURCES)}"
            )
        if self.near_identical is not None and not 0 < self.near_identical <= 1:
            found.append("the near-identical threshold must be in (0, 1]")
        if self.dimension and "=" not in self.dimension:
            found.append('dimension must be "question=value"')
        if not 1 <= len(self.ratios) <= 3 or any(r < 0 for r in self.ratios):
            found.append("give one to three non-negative split ratios")
        elif not math.isclose(sum(self.ratios), 1.0, abs_tol=1e-6):
            found.append(f"the split ratios must add up to 1 (they add up to {sum(self.ratios)})")
        return found


@dataclass
class Pair:
    """One preference pair and where it came from."""

    split: str
    prompt: object  # the Prompt row (text, messages, external id)
    chosen: object  # Candidate rows; chosen is None for a both-bad completion (KTO only)
    rejected: object
    item_id: int
    agreement: float
    votes: int
    judgments: int
    annotators: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    answers: dict = field(default_factory=dict)  # the most common answer to each question
    rubric: dict = field(default_factory=dict)  # {"chosen": [scores…], "rejected": […]}
    adjudicated: bool = False
    source: str = HUMAN  # the rule that made it, or "human"
    confidence: float = 1.0
    reason: str = ""  # the rule's reason (a signal pair)
    signal_pair: int | None = None
    status: str = ""  # the signal pair's: accepted, confirmed or flipped


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a found pair comes from: people (the default), or a signal pair."""

    source: str = HUMAN
    confidence: float | None = None  # None: the agreement
    reason: str = ""
    signal_pair: int | None = None
    status: str = ""
    item_id: int | None = None


FROM_JUDGMENTS = _Origin()


@dataclass(slots=True)
class _Row:
    """A judgment (or a lead's decision) as extraction reads it."""

    item_id: int
    prompt_id: int
    annotator: str
    outcome: str
    chosen_id: int | None
    rejected_id: int | None
    ranking: list
    rubric_scores: dict
    answers: dict
    reasoning: str
    mode: str = "pairwise"
    candidate_key: str = ""


def stated_pairs(row, options: Options) -> list[tuple[int, int]]:
    """The ordered (chosen, rejected) pairs that one judgment or decision states."""
    pairs: list[tuple[int, int]] = []
    if row.outcome == Judgment.Outcome.PREFERRED and row.chosen_id and row.rejected_id:
        pairs.append((row.chosen_id, row.rejected_id))
    elif row.outcome == Judgment.Outcome.RANKED and row.mode == "ranking" and row.ranking:
        ranking = [int(cid) for cid in row.ranking]
        if options.ranking_pairs == "all":
            pairs.extend(combinations(ranking, 2))
        else:
            pairs.extend((ranking[0], other) for other in ranking[1:])
    elif row.outcome == Judgment.Outcome.RANKED and row.chosen_id and row.rejected_id:
        if options.best_vs_all and row.candidate_key:
            others = [int(c) for c in row.candidate_key.split("-") if int(c) != row.chosen_id]
            pairs.extend((row.chosen_id, other) for other in others)
        else:
            pairs.append((row.chosen_id, row.rejected_id))
    if options.rubric_margin is not None and row.rubric_scores:
        totals = {int(cid): _total(scores) for cid, scores in row.rubric_scores.items()}
        for a, b in combinations(sorted(totals), 2):
            if abs(totals[a] - totals[b]) >= options.rubric_margin:
                pair = (a, b) if totals[a] > totals[b] else (b, a)
                if pair not in pairs:
                    pairs.append(pair)
    return pairs


def _total(scores) -> float:
    if not isinstance(scores, dict):
        return 0.0
    return sum(float(v) for v in scores.values() if isinstance(v, int | float))


def _shuffled_prompt(seed: int, prompt: str = "item__prompt_id"):
    """The prompt's place in the export's shuffled order (md5 of seed and prompt id)."""
    return Func(
        Concat(Value(f"{seed}:"), Cast(F(prompt), TextField())),
        function="md5",
        output_field=TextField(),
    )


def judgments_for_pairs(project: Project):
    """The judgments that make pairs of their own: all but those of verification items
    (their experts' verdict is the signal pair's status)."""
    verifies = SignalPair.objects.filter(item_id=OuterRef("item_id"))
    return Judgment.objects.filter(project=project).exclude(Exists(verifies))


def exported_signal_pairs(project: Project):
    """The signal pairs an export takes: accepted, confirmed and flipped."""
    return SignalPair.objects.filter(project=project, status__in=EXPORTED)


def extract(project: Project, options: Options, *, chunk: int = 2000) -> Iterator[Pair]:
    """The project's pairs, aggregated, filtered and split as ``options`` say, streamed in
    a deterministic order (split by split is not needed: each pair carries its split)."""
    if options.problems():
        raise ValueError("; ".join(options.problems()))
    judgments = judgments_for_pairs(project)
    signals = exported_signal_pairs(project)
    prompts_total = (
        judgments.values_list("item__prompt_id").union(signals.values_list("prompt_id")).count()
    )
    bounds = _split_bounds(prompts_total, options.ratios)
    contradicted = _contradictions(project, options) if options.exclude_contradictory else set()
    batch: list[tuple] = []  # (split, chosen, rejected, …) waiting for their candidates
    prompt_rank, current_prompt = -1, None
    merged = heapq.merge(
        _judged(project, judgments, options, chunk),
        _signalled(signals, options, chunk),
        key=lambda entry: entry[0],
    )
    for _, prompt_id, found in merged:
        if prompt_id != current_prompt:
            current_prompt, prompt_rank = prompt_id, prompt_rank + 1
            if len(batch) >= chunk:
                yield from _resolve(batch, options, contradicted)
                batch = []
        split = _split_of(prompt_rank, bounds)
        batch.extend((split, *entry) for entry in found)
    yield from _resolve(batch, options, contradicted)


def _judged(project: Project, judgments, options: Options, chunk: int):
    """(shuffled key, prompt id, pairs found) per item of the judgments, in export order."""
    decisions = {}
    if options.policy == "adjudicated":
        decisions = {
            a.item_id: _Row(
                a.item_id, 0, "", a.outcome, a.chosen_id, a.rejected_id, a.ranking, {}, {}, a.note
            )
            for a in Adjudication.objects.filter(project=project)
        }
    rows = (
        # JSON columns come as text and are decoded only when they hold something: decoding
        # three documents per judgment in Django's converters was a fifth of the time.
        judgments.annotate(
            shuffled=_shuffled_prompt(options.seed),
            ranking_text=Cast("ranking", TextField()),
            rubric_text=Cast("rubric_scores", TextField()),
            answers_text=Cast("answers", TextField()),
        )
        .order_by("shuffled", "item_id", "id")
        .values_list(
            "shuffled",
            "item_id",
            "item__prompt_id",
            "annotator__email",
            "outcome",
            "chosen_id",
            "rejected_id",
            "ranking_text",
            "rubric_text",
            "answers_text",
            "reasoning",
            "item__mode",
            "item__candidate_key",
        )
    )
    current_item, shuffled, item_rows = None, "", []
    for (
        key,
        item_id,
        prompt_id,
        email,
        outcome,
        chosen,
        rejected,
        ranking,
        rubric,
        answers,
        *rest,
    ) in rows.iterator(chunk_size=chunk):
        if item_id != current_item and item_rows:
            found = _aggregate(item_rows, decisions.get(current_item), options)
            yield shuffled, item_rows[0].prompt_id, [(*f, FROM_JUDGMENTS) for f in found]
            item_rows = []
        current_item, shuffled = item_id, key
        item_rows.append(
            _Row(
                item_id,
                prompt_id,
                email,
                outcome,
                chosen,
                rejected,
                _json(ranking, []),
                _json(rubric, {}),
                _json(answers, {}),
                *rest,
            )  # fmt: skip
        )
    if item_rows:
        found = _aggregate(item_rows, decisions.get(current_item), options)
        yield shuffled, item_rows[0].prompt_id, [(*f, FROM_JUDGMENTS) for f in found]


def _signalled(signals, options: Options, chunk: int):
    """(shuffled key, prompt id, [the pair found]) per exported signal pair, in export
    order; a verified pair with its experts' judgments as support."""
    rows = (
        signals.annotate(shuffled=_shuffled_prompt(options.seed, "prompt_id"))
        .order_by("shuffled", "id")
        .values_list(
            "shuffled",
            "id",
            "prompt_id",
            "chosen_id",
            "rejected_id",
            "rule",
            "confidence",
            "reason",
            "status",
            "item_id",
            "item__mode",
            "item__candidate_key",
        )
    )
    pending: list[tuple] = []

    def flush():
        items = {row[9] for row in pending if row[8] != SignalPair.Status.ACCEPTED}
        judged: dict[int, list[_Row]] = defaultdict(list)
        for values in (
            Judgment.objects.filter(item_id__in=items)
            .order_by("item_id", "id")
            .values_list(
                "item_id",
                "item__prompt_id",
                "annotator__email",
                "outcome",
                "chosen_id",
                "rejected_id",
                "ranking",
                "rubric_scores",
                "answers",
                "reasoning",
            )
        ):
            judged[values[0]].append(_Row(*values))
        decided = set(
            Adjudication.objects.filter(item_id__in=items).values_list("item_id", flat=True)
        )
        for (
            key,
            pk,
            prompt_id,
            chosen,
            rejected,
            rule,
            confidence,
            reason,
            status,
            item_id,
            *_,
        ) in pending:
            if status == SignalPair.Status.FLIPPED:
                chosen, rejected = rejected, chosen
            support, total, adjudicated = [], 0, False
            if status != SignalPair.Status.ACCEPTED:
                rows_of_item = judged.get(item_id, [])
                support = [
                    row
                    for row in rows_of_item
                    if row.outcome == Judgment.Outcome.PREFERRED
                    and (row.chosen_id, row.rejected_id) == (chosen, rejected)
                ]
                total, adjudicated = len(rows_of_item), item_id in decided
                share = 1.0 if adjudicated or not total else len(support) / total
                confidence = share
                if share < options.min_agreement:
                    continue
            origin = _Origin(rule, confidence, reason, pk, status, item_id)
            # No one judged an accepted pair: its agreement is its confidence.
            found = (chosen, rejected, confidence, support, total, adjudicated, origin)
            yield key, prompt_id, [found]

    for row in rows.iterator(chunk_size=chunk):
        pending.append(row)
        if len(pending) >= chunk:
            yield from flush()
            pending = []
    yield from flush()


def _json(text: str | None, empty):
    return empty if text in (None, "[]", "{}") else json.loads(text)


def _split_bounds(prompts: int, ratios: tuple[float, ...]) -> list[int]:
    """Prompt ranks where each split ends: [train_end, validation_end, test_end]."""
    bounds, running = [], 0.0
    for ratio in ratios:
        running += ratio
        bounds.append(round(running * prompts))
    bounds[-1] = prompts
    return bounds


def _split_of(rank: int, bounds: list[int]) -> str:
    for name, bound in zip(SPLITS, bounds, strict=False):
        if rank < bound:
            return name
    return SPLITS[len(bounds) - 1]


def _aggregate(rows: list[_Row], decision, options: Options):
    """(chosen id, rejected id, agreement, supporting rows, total, adjudicated) of an item."""
    stated = [(row, stated_pairs(row, options)) for row in rows]
    total = len(rows)
    candidates = [int(c) for c in rows[0].candidate_key.split("-") if c]
    bad = [row for row in rows if row.outcome == Judgment.Outcome.BOTH_BAD]
    if decision is not None:
        decision.mode, decision.candidate_key = rows[0].mode, rows[0].candidate_key
        for pair in stated_pairs(decision, options):
            support = [row for row, pairs in stated if pair in pairs]
            yield (*pair, 1.0, support or rows, total, True)
        if decision.outcome == Judgment.Outcome.BOTH_BAD:
            yield from ((None, cid, 1.0, bad or rows, total, True) for cid in candidates)
        return
    # Both bad: every candidate of the item is an undesirable completion (KTO's label
    # false), under the same rule as pairs.
    share = len(bad) / total
    if (
        bad
        and (
            options.policy == "all"
            or (options.policy in ("unanimous", "adjudicated") and len(bad) == total)
            or (options.policy == "majority" and share > 0.5)
        )
        and share >= options.min_agreement
    ):
        for group in [[row] for row in bad] if options.policy == "all" else [bad]:
            yield from ((None, cid, share, group, total, False) for cid in candidates)
    votes: dict[tuple, list] = {}
    for row, pairs in stated:
        for pair in pairs:
            votes.setdefault(pair, []).append(row)
    for pair, support in votes.items():
        agreement = len(support) / total
        if options.policy == "all":
            for row in support:
                if agreement >= options.min_agreement:
                    yield (*pair, agreement, [row], total, False)
            continue
        if options.policy in ("unanimous", "adjudicated") and len(support) != total:
            continue
        if options.policy == "majority" and agreement <= 0.5:
            continue
        if agreement >= options.min_agreement:
            yield (*pair, agreement, support, total, False)


def _contradictions(project: Project, options: Options) -> set[tuple[int, int]]:
    """Unordered candidate pairs that the project's judgments order both ways (in one item
    or across items of a prompt). Held in memory: only with exclude_contradictory."""
    seen: dict[tuple[int, int], set] = defaultdict(set)
    fields = ["outcome", "chosen_id", "rejected_id", "ranking", "rubric_scores"]
    rows = Judgment.objects.filter(project=project).values_list(
        "item_id", *fields, "item__mode", "item__candidate_key"
    )
    for item_id, *values, mode, key in rows.iterator():
        row = _Row(item_id, 0, "", *values, {}, "", mode, key)
        for a, b in stated_pairs(row, options):
            seen[(min(a, b), max(a, b))].add(a < b)
    return {pair for pair, directions in seen.items() if len(directions) == 2}


@dataclass(slots=True)
class PromptText:
    """What the formats read of a prompt (plain rows: model instances cost a third of the
    export's time)."""

    pk: int
    external_id: str
    text: str
    messages: list


@dataclass(slots=True)
class CandidateText:
    pk: int
    text: str
    source: str
    model: str
    parameters: dict
    finish_reason: str
    prompt: PromptText

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def _candidates(ids: set[int]) -> dict[int, CandidateText]:
    """The batch's candidates with their prompts, by id. One array parameter instead of
    ``pk__in``: planning an IN list of 10,000 parameters took longer than reading the rows."""
    sql = (
        "SELECT c.id, c.text, c.source, c.model, c.parameters::text, c.finish_reason, "  # noqa: S608
        "p.id, p.external_id, p.text, p.messages::text "
        f"FROM {Candidate._meta.db_table} c JOIN {Prompt._meta.db_table} p "
        "ON p.id = c.prompt_id WHERE c.id = ANY(%s)"
    )  # table names from the models; the ids are one array parameter
    prompts: dict[int, PromptText] = {}
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [sorted(ids)])
        for (
            pk,
            text,
            source,
            model,
            parameters,
            finish,
            prompt_id,
            external,
            ptext,
            messages,
        ) in cursor.fetchall():
            if prompt_id not in prompts:
                prompts[prompt_id] = PromptText(prompt_id, external, ptext, _json(messages, []))
            found[pk] = CandidateText(
                pk, text, source, model, _json(parameters, {}), finish, prompts[prompt_id]
            )
    return found


def _resolve(batch: list[tuple], options: Options, contradicted: set) -> Iterator[Pair]:
    """Load the candidates and prompts of a batch of pairs, filter, and make Pairs."""
    ids = {cid for entry in batch for cid in entry[1:3] if cid is not None}
    candidates = _candidates(ids)
    question, _, wanted = options.dimension.partition("=")
    for split, chosen_id, rejected_id, agreement, support, total, adjudicated, origin in batch:
        chosen, rejected = candidates.get(chosen_id), candidates.get(rejected_id)
        if rejected is None or (chosen_id is not None and chosen is None):
            continue
        confidence = agreement if origin.confidence is None else origin.confidence
        if options.pair_sources and origin.source not in options.pair_sources:
            continue
        if confidence < options.min_confidence:
            continue
        both = [c for c in (chosen, rejected) if c is not None]
        if chosen is not None and tuple(sorted((chosen_id, rejected_id))) in contradicted:
            continue
        if options.sources and not {c.source for c in both} <= set(options.sources):
            continue
        if options.exclude_truncated and any(c.truncated for c in both):
            continue
        answers = _answers_of(support)
        if question and answers.get(question) != wanted:
            continue
        if (
            chosen is not None
            and options.near_identical is not None
            and text_similarity(chosen.text, rejected.text) >= options.near_identical
        ):
            continue
        rubric: dict = {}
        for row in support:
            for side, cid in (("chosen", chosen_id), ("rejected", rejected_id)):
                scores = (row.rubric_scores or {}).get(str(cid))
                if scores:
                    rubric.setdefault(side, []).append(scores)
        yield Pair(
            split=split,
            prompt=rejected.prompt,
            chosen=chosen,
            rejected=rejected,
            item_id=origin.item_id if origin.signal_pair else support[0].item_id,
            agreement=round(agreement, 4),
            votes=len(support),
            judgments=total,
            annotators=sorted({row.annotator for row in support}),
            reasoning=[row.reasoning for row in support if row.reasoning],
            answers=answers,
            rubric=rubric,
            adjudicated=adjudicated,
            source=origin.source,
            confidence=round(confidence, 4),
            reason=origin.reason,
            signal_pair=origin.signal_pair,
            status=origin.status,
        )


def _answers_of(support) -> dict:
    """The most common answer to each other question among the supporting judgments (ties:
    the alphabetically first, so exports are deterministic)."""
    if len(support) == 1:  # the common case (policy "all", single annotation)
        return {
            name: str(value)
            for name, value in sorted((support[0].answers or {}).items())
            if isinstance(value, str | int | float) and value != ""
        }
    counts: dict[str, Counter] = defaultdict(Counter)
    for row in support:
        for name, value in (row.answers or {}).items():
            if isinstance(value, str | int | float) and value != "":
                counts[name][str(value)] += 1
    return {
        name: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        for name, c in sorted(counts.items())
    }
