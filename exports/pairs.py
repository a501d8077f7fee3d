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

Binarization (``binarize``, exports.binarize): instead of the pairs each judgment states,
the pairs a rule makes from a score per candidate (the judgments' order, or the rubric's
aspects by a weighted mean), with a minimum margin, ties dropped or kept, and at most k
pairs per prompt. ``policy`` then only says whether a lead's decision replaces its item's
judgments (``adjudicated``, order scores); signal pairs have no scores and are left out.
A binarized pair's agreement is the share of the judgments that compared its two
candidates that put the chosen one above (0 when no judgment saw both: their scores come
from different items); its votes are those judgments. ``score_columns`` (on with any
rule) gives every pair its margin and scores (``Pair.scored``).

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
from dataclasses import asdict, dataclass, field, fields
from itertools import combinations

from django.db import connection
from django.db.models import Exists, F, Func, OuterRef, TextField, Value
from django.db.models.functions import Cast, Concat

from annotation.judge import judge_decisions_for_export
from annotation.models import Adjudication, Judgment
from exports import binarize
from exports.binarize import RULES, SCORES_FROM, Scored
from tasks import sqlrows
from tasks.models import Candidate, Project, Prompt, Rule, SignalPair
from tasks.text import text_similarity

POLICIES = ("adjudicated", "unanimous", "majority", "all")
CONVERSATIONS = ("refuse", "transcript")
RANKING_PAIRS = ("top", "all")
SPLITS = ("train", "validation", "test")
HUMAN = "human"  # the source of a pair from judgments
JUDGE = "judge"  # the source of a pair the AI judge decided (annotation.judge)
# A pair's source: a pair-builder rule (the KTO-only "rating" makes no pair), people, or
# the AI judge.
PAIR_SOURCES = (*(rule for rule in Rule.values if rule != Rule.RATING), HUMAN, JUDGE)
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
    # Binarization (exports.binarize): a rule over a score per candidate ("": the pairs the
    # judgments state), where the score comes from, aspect weights ("aspect=weight,…"),
    # the smallest margin, ties, at most k pairs per prompt (0: no limit).
    binarize: str = ""
    scores_from: str = "order"
    aspect_weights: str = ""
    min_margin: float = 0.0
    keep_ties: bool = False
    max_pairs_per_prompt: int = 0
    # margin, score_chosen, score_rejected and per-aspect columns (on with any rule)
    score_columns: bool = False

    @property
    def with_scores(self) -> bool:
        return bool(self.binarize) or self.score_columns

    def problems(self) -> list[str]:
        found = self._binarization_problems()
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

    def _binarization_problems(self) -> list[str]:
        found = []
        if self.binarize not in ("", *RULES):
            found.append(f"binarize must be one of {', '.join(RULES)} (or empty)")
        if self.scores_from not in SCORES_FROM:
            found.append(f"scores_from must be one of {', '.join(SCORES_FROM)}")
        try:
            binarize.parse_weights(self.aspect_weights)
        except ValueError as wrong:
            found.append(str(wrong))
        if self.aspect_weights and self.scores_from != "aspects":
            found.append('aspect_weights need scores_from "aspects"')
        if not self.min_margin >= 0:
            found.append("min_margin must be 0 or more")
        if self.max_pairs_per_prompt < 0:
            found.append("max_pairs_per_prompt must be 0 (no limit) or more")
        tuned = [
            name
            for name in BINARIZATION_FIELDS[1:]
            if name != "score_columns" and getattr(self, name) != _DEFAULTS[name]
        ]
        if tuned and not self.binarize:
            found.append(f"{', '.join(tuned)} need(s) a binarization rule (binarize)")
        return found


# Options an export before binarization did not have: left out of its record (manifest,
# card, Export.options) while they keep their defaults, so such an export is unchanged.
BINARIZATION_FIELDS = (
    "binarize",
    "scores_from",
    "aspect_weights",
    "min_margin",
    "keep_ties",
    "max_pairs_per_prompt",
    "score_columns",
)
_DEFAULTS = {f.name: f.default for f in fields(Options)}


def options_record(options: Options) -> dict:
    """The options as stored and shown: every option, binarization's only when set."""
    return {
        name: value
        for name, value in asdict(options).items()
        if name not in BINARIZATION_FIELDS or value != _DEFAULTS[name]
    }


def aspects_of(project: Project) -> list[str]:
    """The rubric's aspects: the names of the project's rating questions."""
    return [question["name"] for question in project.rubric]


def check(project: Project, options: Options) -> None:
    """ValueError naming every problem of ``options`` for this project (the option checks,
    and aspect weights or aspect scores the project's rubric cannot give)."""
    found = options.problems()
    if not found and options.binarize and options.scores_from == "aspects":
        aspects = aspects_of(project)
        try:
            binarize.weights_for(aspects, options.aspect_weights)
        except ValueError as wrong:
            found.append(str(wrong))
        if not aspects:
            found.append("scores from aspects need rating questions: the project has none")
    if found:
        raise ValueError("; ".join(found))


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
    scored: Scored | None = None  # margin and scores, with score_columns
    # Share of its judgments that showed the chosen one before the rejected one (screen
    # order, or the item's candidate order when none was stored); None if unknown.
    shown_first: float | None = None

    @property
    def margin(self) -> float:
        return self.scored.margin if self.scored is not None else 0.0


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where a found pair comes from: people (the default), or a signal pair."""

    source: str = HUMAN
    confidence: float | None = None  # None: the agreement
    reason: str = ""
    signal_pair: int | None = None
    status: str = ""
    item_id: int | None = None
    scored: Scored | None = None  # a binarized pair's scores


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
    strength: int | None = None
    display: list = field(default_factory=list)  # the screen order, when asked for


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


def exported_judge_decisions(project: Project):
    """The items the AI judge decided, when the lead lets exports take them."""
    return judge_decisions_for_export(project)


def prompts_with_judgments(project: Project, options: Options) -> int:
    """How many prompts the export draws from: those with judgments that make pairs, and
    (without a binarization rule) those with exported signal pairs or judge decisions."""
    prompts = judgments_for_pairs(project).values_list("item__prompt_id")
    if not options.binarize:
        prompts = prompts.union(
            exported_signal_pairs(project).values_list("prompt_id"),
            exported_judge_decisions(project).values_list("item__prompt_id"),
        )
    else:
        prompts = prompts.distinct()
    return prompts.count()


def extract(
    project: Project, options: Options, *, chunk: int = 2000, positions: bool = False
) -> Iterator[Pair]:
    """The project's pairs, aggregated, filtered and split as ``options`` say, streamed in
    a deterministic order (split by split is not needed: each pair carries its split).
    ``positions``: also where each pair's candidates were shown (``Pair.shown_first``)."""
    check(project, options)
    judgments = judgments_for_pairs(project)
    bounds = _split_bounds(prompts_with_judgments(project, options), options.ratios)
    contradicted = _contradictions(project, options) if options.exclude_contradictory else set()
    rows = _judgment_rows(judgments, options, chunk, positions)
    if options.binarize:
        merged = _binarized(project, rows, options)
    else:
        merged = heapq.merge(
            _judged(project, rows, options),
            _signalled(exported_signal_pairs(project), options, chunk),
            _judge_decided(exported_judge_decisions(project), options, chunk),
            key=lambda entry: entry[0],
        )
    resolved = _resolve_batches(merged, bounds, options, contradicted, chunk, positions)
    yield from _at_most_per_prompt(resolved, options)


def _resolve_batches(merged, bounds, options, contradicted, chunk, positions) -> Iterator[Pair]:
    batch: list[tuple] = []  # (split, chosen, rejected, …) waiting for their candidates
    prompt_rank, current_prompt = -1, None
    for _, prompt_id, found in merged:
        if prompt_id != current_prompt:
            current_prompt, prompt_rank = prompt_id, prompt_rank + 1
            if len(batch) >= chunk:
                yield from _resolve(batch, options, contradicted, positions)
                batch = []
        split = _split_of(prompt_rank, bounds)
        batch.extend((split, *entry) for entry in found)
    yield from _resolve(batch, options, contradicted, positions)


def _at_most_per_prompt(pairs: Iterator[Pair], options: Options) -> Iterator[Pair]:
    """At most ``max_pairs_per_prompt`` pairs of each prompt (exports.binarize.at_most),
    after every filter; a prompt's pairs arrive together, so only one prompt is held."""
    k = options.max_pairs_per_prompt
    if not k:
        yield from pairs
        return
    held: list[Pair] = []
    for pair in pairs:
        if held and pair.prompt.pk != held[0].prompt.pk:
            yield from binarize.at_most(held, k, options.seed)
            held = []
        held.append(pair)
    yield from binarize.at_most(held, k, options.seed)


def _judgment_rows(judgments, options: Options, chunk: int, positions: bool):
    """(shuffled key, _Row) per judgment, in export order: by prompt in the seed's
    shuffled order, then item, then judgment."""
    # Strengths and screen orders are read only for the margins and the preview that use them.
    extra = {"display_text": Cast("assignment__display_order", TextField())} if positions else {}
    strength = ["strength"] if options.with_scores else []
    rows = (
        # JSON columns come as text and are decoded only when they hold something: decoding
        # three documents per judgment in Django's converters was a fifth of the time.
        judgments.annotate(
            shuffled=_shuffled_prompt(options.seed),
            ranking_text=Cast("ranking", TextField()),
            rubric_text=Cast("rubric_scores", TextField()),
            answers_text=Cast("answers", TextField()),
            **extra,
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
            *strength,
            *extra,
        )
    )
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
        display = _json(rest.pop(), []) if positions else []
        row = _Row(
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
            display=display,
        )  # fmt: skip
        yield key, row


def _decisions(project: Project, options: Options) -> dict:
    """The lead's decisions by item, as rows, when they win (policy ``adjudicated``)."""
    if options.policy != "adjudicated":
        return {}
    return {
        a.item_id: _Row(
            a.item_id, 0, "", a.outcome, a.chosen_id, a.rejected_id, a.ranking, {}, {}, a.note
        )
        for a in Adjudication.objects.filter(project=project)
    }


def _grouped(rows, by: str):
    """(key of the group's first row, [rows]) for each run of rows with the same ``by``."""
    current, shuffled, group = None, "", []
    for key, row in rows:
        if getattr(row, by) != current and group:
            yield shuffled, group
            group = []
        current, shuffled = getattr(row, by), key
        group.append(row)
    if group:
        yield shuffled, group


def _judged(project: Project, rows, options: Options):
    """(shuffled key, prompt id, pairs found) per item of the judgments, in export order."""
    decisions = _decisions(project, options)
    for shuffled, item_rows in _grouped(rows, "item_id"):
        found = _aggregate(item_rows, decisions.get(item_rows[0].item_id), options)
        yield shuffled, item_rows[0].prompt_id, [(*f, FROM_JUDGMENTS) for f in found]


def _binarized(project: Project, rows, options: Options):
    """(shuffled key, prompt id, pairs found) per prompt: the pairs ``options.binarize``
    makes from its candidates' scores (exports.binarize)."""
    decisions = _decisions(project, options) if options.scores_from == "order" else {}
    weights = (
        binarize.weights_for(aspects_of(project), options.aspect_weights)
        if options.scores_from == "aspects"
        else {}
    )
    for shuffled, prompt_rows in _grouped(rows, "prompt_id"):
        decided = {row.item_id for row in prompt_rows if row.item_id in decisions}
        for item_id in sorted(decided):
            first = next(row for row in prompt_rows if row.item_id == item_id)
            decisions[item_id].mode, decisions[item_id].candidate_key = (
                first.mode,
                first.candidate_key,
            )
            decisions[item_id].prompt_id = first.prompt_id
        scoring = [row for row in prompt_rows if row.item_id not in decided]
        scoring += [decisions[item_id] for item_id in sorted(decided)]
        scores = binarize.prompt_scores(scoring, options.scores_from, weights)
        found = []
        prompt_id = prompt_rows[0].prompt_id
        for chosen, rejected, margin in binarize.choose(
            scores.scores,
            rule=options.binarize,
            min_margin=options.min_margin,
            keep_ties=options.keep_ties,
            seed=options.seed,
            prompt_id=prompt_id,
        ):
            compared, agreement = scores.evidence(chosen, rejected)
            support = compared or [
                row for row, seen, _ in scores.per_row if chosen in seen or rejected in seen
            ]
            scored = Scored(
                margin=margin,
                score_chosen=round(scores.scores[chosen], binarize.DIGITS),
                score_rejected=round(scores.scores[rejected], binarize.DIGITS),
                aspects_chosen=binarize.rounded(scores.aspects.get(chosen, {})),
                aspects_rejected=binarize.rounded(scores.aspects.get(rejected, {})),
                margin_from="scores",
            )
            origin = _Origin(scored=scored)
            adjudicated = any(row.item_id in decided for row in support)
            total = len(prompt_rows)
            found.append((chosen, rejected, agreement, support, total, adjudicated, origin))
        yield shuffled, prompt_id, found


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


def _judge_decided(decisions, options: Options, chunk: int):
    """(shuffled key, prompt id, [the pair found]) per judge-decided item, in export order.
    Nobody judged it: its confidence is the judge's margin over both orders and its samples
    (1.0: every verdict agreed), its agreement the same, as for an accepted signal pair."""
    rows = (
        decisions.annotate(shuffled=_shuffled_prompt(options.seed, "item__prompt_id"))
        .order_by("shuffled", "item_id")
        .values_list(
            "shuffled", "item__prompt_id", "item_id", "chosen_id", "rejected_id", "margin", "run_id"
        )
    )
    for key, prompt_id, item_id, chosen, rejected, margin, run in rows.iterator(chunk_size=chunk):
        reason = f"AI judge run {run}: margin {margin:.2f} over both orders"
        origin = _Origin(JUDGE, margin, reason, None, "judge_decided", item_id)
        yield key, prompt_id, [(chosen, rejected, margin, [], 0, False, origin)]


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
        "ON p.id = c.prompt_id WHERE c.id = ANY(%s::bigint[])"
    )  # table names from the models; the ids are one array parameter
    prompts: dict[int, PromptText] = {}
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [sqlrows.array(sorted(ids))])
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


def _resolve(
    batch: list[tuple], options: Options, contradicted: set, positions: bool = False
) -> Iterator[Pair]:
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
            item_id=origin.item_id if origin.source != HUMAN else support[0].item_id,
            agreement=round(agreement, 4),
            votes=len(support),
            judgments=total,
            annotators=sorted({row.annotator for row in support if row.annotator}),
            reasoning=[row.reasoning for row in support if row.reasoning],
            answers=answers,
            rubric=rubric,
            adjudicated=adjudicated,
            source=origin.source,
            confidence=round(confidence, 4),
            reason=origin.reason,
            signal_pair=origin.signal_pair,
            status=origin.status,
            scored=(origin.scored or _scored(support, chosen_id, rejected_id))
            if options.with_scores
            else None,
            shown_first=_shown_first(support, chosen_id, rejected_id) if positions else None,
        )


def _scored(support, chosen_id: int | None, rejected_id: int) -> Scored:
    """The margin and scores of a pair people stated (exports.binarize's docstring): the
    mean strength of its judgments, else the difference of its sides' rubric scores (each
    the equal-weight mean of its aspects' means), else 0.0."""
    chosen = binarize.aspect_means(support, chosen_id) if chosen_id is not None else {}
    rejected = binarize.aspect_means(support, rejected_id)
    raw = [binarize.weighted(side, {}) if side else None for side in (chosen, rejected)]
    sides = [None if value is None else round(value, binarize.DIGITS) for value in raw]
    strength = binarize.strength_margin(support)
    if strength is not None:
        margin, made_from = strength, "strength"
    elif None not in raw:
        margin, made_from = round(raw[0] - raw[1], binarize.DIGITS), "scores"
    else:
        margin, made_from = 0.0, ""
    return Scored(margin, *sides, binarize.rounded(chosen), binarize.rounded(rejected), made_from)


def _shown_first(support, chosen_id: int | None, rejected_id: int) -> float | None:
    """Share of the judgments that showed both where the chosen one came first: on their
    screen (the assignment's display order) or, with none stored, in the item's order."""
    shown = []
    for row in support:
        order = row.display or [int(c) for c in (row.candidate_key or "").split("-") if c]
        if chosen_id in order and rejected_id in order:
            shown.append(order.index(chosen_id) < order.index(rejected_id))
    return round(sum(shown) / len(shown), 4) if shown else None


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
