"""Binarization: preference pairs made from a score per candidate instead of from each
judgment's own statement, as HelpSteer- and UltraFeedback-style data is binarized.

Scores, per prompt, over the judgments of all its items (``scores_from``):
- ``order``: the judgments' order as a win rate, (wins + ½ ties) / comparisons. A
  judgment compares: pairwise, the preferred over the other (a tie: the two, half a win
  each); ranking, every ordered pair of its order; best / worst, the best over every other
  and every other over the worst (the middle ones are not compared with each other).
  A both-bad judgment compares nothing (it says both are bad, not that they are equal).
- ``aspects``: the rubric (the project's ``rating`` questions) as a weighted mean: each
  aspect's mean score over the judgments that scored the candidate, then
  Σ weight·mean / Σ weight over the aspects the candidate has a score for. Weights are
  ``aspect=weight,…`` (empty: every aspect weighs 1; an aspect left out of a given list
  weighs 0, so ``overall=1`` binarizes by one overall score). Argilla re-binarized
  UltraFeedback by the mean of its aspects instead of its overall score, and the winner
  changed for many prompts: the choice is the lead's, and the card states it.

Rules (``binarize``), over the candidates with a score, in the order score high to low,
equal scores in an order fixed by the seed (md5 of seed and candidate id):
- ``best_vs_others``: the best vs every other;
- ``best_vs_worst``: the best vs the last;
- ``best_vs_random``: the best vs one other drawn with a generator seeded by the seed
  and the prompt;
- ``all_pairs``: every ordered pair.
A pair is kept when its margin (score chosen − score rejected) is at least
``min_margin``; equal scores make no pair unless ``keep_ties`` (then the seeded order
decides which side is chosen, margin 0). ``max_pairs_per_prompt`` (k, 0: no limit) keeps
the k pairs of a prompt with the largest margins, equal margins in an order fixed by the
seed (md5 of seed and both ids).

Margins of pairs people stated directly (the default extraction, with score columns):
``strength_margin`` (the mean ``Judgment.strength`` 1..3 of the pair's judgments that
carry one: the strength sits on a pairwise label, so it grades that judgment's stated
direction, as Llama 2's "significantly / slightly better" scale does), else the
difference of the two sides' rubric scores, else 0.0: TRL's RewardTrainer takes a number
in every row (``torch.tensor`` of the batch's margins), and a margin of 0 is its plain
loss, Llama 2's "negligibly better".
"""

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field

RULES = ("best_vs_others", "best_vs_worst", "best_vs_random", "all_pairs")
SCORES_FROM = ("order", "aspects")
DIGITS = 4  # scores and margins are rounded to this many decimals


@dataclass(frozen=True, slots=True)
class Scored:
    """What a pair's margin and score columns say (exports.formats writes them)."""

    margin: float = 0.0
    score_chosen: float | None = None
    score_rejected: float | None = None
    aspects_chosen: dict = field(default_factory=dict)
    aspects_rejected: dict = field(default_factory=dict)
    margin_from: str = ""  # "scores", "strength", or "" (no graded margin: 0.0)


def parse_weights(text: str) -> dict[str, float]:
    """``"helpfulness=2, honesty=1"`` as {aspect: weight}; ValueError naming the entry."""
    weights: dict[str, float] = {}
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        name, sign, value = (s.strip() for s in entry.partition("="))
        try:
            weight = float(value) if sign and name else None
        except ValueError:
            weight = None
        if weight is None or weight != weight or weight in (float("inf"), float("-inf")):
            raise ValueError(f'aspect weight "{entry}" must be aspect=number')
        if weight < 0:
            raise ValueError(f'aspect weight "{entry}" must not be negative')
        if name in weights:
            raise ValueError(f'aspect "{name}" is weighted twice')
        weights[name] = weight
    if weights and not any(weights.values()):
        raise ValueError("at least one aspect weight must be above 0")
    return weights


def weights_for(aspects: list[str], text: str) -> dict[str, float]:
    """The weight of every aspect of the rubric; ValueError for an aspect it does not have."""
    given = parse_weights(text)
    unknown = sorted(set(given) - set(aspects))
    if unknown:
        known = ", ".join(aspects) or "none"
        raise ValueError(
            f"unknown aspect(s) {', '.join(unknown)}: the project's rubric has {known}"
        )
    if not given:
        return dict.fromkeys(aspects, 1.0)
    return {name: given.get(name, 0.0) for name in aspects}


def strength_margin(rows) -> float | None:
    """The mean strength of the judgments that state a pair and carry one (a pairwise
    label's strength, 1..3, grades the direction the label states); None if none does."""
    strengths = [row.strength for row in rows if row.outcome == "preferred" and row.strength]
    return round(sum(strengths) / len(strengths), DIGITS) if strengths else None


def aspect_means(rows, candidate_id: int) -> dict[str, float]:
    """Each aspect's mean score of a candidate over the judgments that scored it."""
    sums: dict[str, list] = defaultdict(lambda: [0.0, 0])
    for row in rows:
        for name, value in ((row.rubric_scores or {}).get(str(candidate_id)) or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                sums[name][0] += value
                sums[name][1] += 1
    return {name: total / n for name, (total, n) in sorted(sums.items())}


def rounded(means: dict[str, float]) -> dict[str, float]:
    return {name: round(value, DIGITS) for name, value in means.items()}


def weighted(means: dict[str, float], weights: dict[str, float]) -> float | None:
    """Σ weight·mean / Σ weight over the aspects with a score (None: no weighted aspect)."""
    total = sum(weights.get(name, 1.0) for name in means)
    if not total:
        return None
    return sum(weights.get(name, 1.0) * value for name, value in means.items()) / total


def _row_order(row) -> tuple[dict[int, float], bool]:
    """One judgment's order as a score per candidate it compared (higher is better), and
    whether equal scores are a stated tie (a tie label) or no comparison (best / worst's
    middle ones)."""
    candidates = [int(c) for c in (row.candidate_key or "").split("-") if c]
    if row.outcome == "tie":
        return dict.fromkeys(candidates, 0.5), True
    if row.outcome == "preferred" and row.chosen_id and row.rejected_id:
        return {row.chosen_id: 1.0, row.rejected_id: 0.0}, False
    if row.outcome != "ranked":
        return {}, False
    if row.mode == "ranking" and row.ranking and len(row.ranking) > 1:
        last = len(row.ranking) - 1
        return {int(c): (last - i) / last for i, c in enumerate(row.ranking)}, False
    if row.chosen_id and row.rejected_id:
        middle = {c: 0.5 for c in candidates if c not in (row.chosen_id, row.rejected_id)}
        return {**middle, row.chosen_id: 1.0, row.rejected_id: 0.0}, False
    return {}, False


def _row_aspects(row, weights: dict[str, float]) -> tuple[dict[int, float], bool]:
    """One judgment's weighted rubric score per candidate it scored (equal: a tie)."""
    scores = {}
    for cid in row.rubric_scores or {}:
        value = weighted(aspect_means([row], int(cid)), weights)
        if value is not None:
            scores[int(cid)] = value
    return scores, True


@dataclass
class PromptScores:
    """The scores of one prompt's candidates (unrounded: margins are differences of these)
    and, per judgment, how it ordered them."""

    scores: dict[int, float]
    aspects: dict[int, dict[str, float]]
    per_row: list[tuple[object, dict[int, float], bool]]

    def evidence(self, chosen: int, rejected: int) -> tuple[list, float]:
        """The judgments that compared the two, and the share of them that put ``chosen``
        above (a tie counts for neither side)."""
        compared, above = [], 0
        for row, scores, ties in self.per_row:
            if chosen in scores and rejected in scores:
                if scores[chosen] == scores[rejected] and not ties:
                    continue
                compared.append(row)
                above += scores[chosen] > scores[rejected]
        return compared, (above / len(compared) if compared else 0.0)


def prompt_scores(rows, scores_from: str, weights: dict[str, float]) -> PromptScores:
    """Every scored candidate of one prompt's judgments (see the module's docstring)."""
    if scores_from == "aspects":
        per_row = [(row, *_row_aspects(row, weights)) for row in rows]
        candidates = sorted({cid for _, scores, _ in per_row for cid in scores})
        aspects = {cid: aspect_means(rows, cid) for cid in candidates}
        scores = {}
        for cid in candidates:
            value = weighted(aspects[cid], weights)
            if value is not None:
                scores[cid] = value
        return PromptScores(scores, aspects, per_row)
    per_row = [(row, *_row_order(row)) for row in rows]
    wins: dict[int, float] = defaultdict(float)
    compared: dict[int, int] = defaultdict(int)
    for _, scores, ties in per_row:
        for a in scores:
            for b in scores:
                if a == b or (scores[a] == scores[b] and not ties):
                    continue
                compared[a] += 1
                wins[a] += 1.0 if scores[a] > scores[b] else 0.5 if scores[a] == scores[b] else 0
    scores = {cid: wins[cid] / n for cid, n in sorted(compared.items())}
    aspects = {cid: aspect_means(rows, cid) for cid in scores}
    return PromptScores(scores, aspects, per_row)


def _seeded(seed: int, *ids) -> str:
    return hashlib.md5(":".join(map(str, (seed, *ids))).encode(), usedforsecurity=False).hexdigest()


def choose(
    scores: dict[int, float],
    *,
    rule: str,
    min_margin: float,
    keep_ties: bool,
    seed: int,
    prompt_id: int,
) -> list[tuple[int, int, float]]:
    """(chosen, rejected, margin) of one prompt under ``rule`` (module docstring)."""
    ranked = sorted(scores, key=lambda cid: (-scores[cid], _seeded(seed, cid)))

    def margin(a: int, b: int) -> float:
        return round(scores[a] - scores[b], DIGITS)

    def eligible(a: int, b: int) -> bool:
        gap = margin(a, b)
        return gap >= min_margin and (gap > 0 or keep_ties)

    if len(ranked) < 2:
        return []
    best = ranked[0]
    if rule == "all_pairs":
        found = [(a, b) for i, a in enumerate(ranked) for b in ranked[i + 1 :] if eligible(a, b)]
    elif rule == "best_vs_worst":
        found = [(best, ranked[-1])] if eligible(best, ranked[-1]) else []
    elif rule == "best_vs_random":
        others = [other for other in ranked[1:] if eligible(best, other)]
        draw = random.Random(f"{seed}:{prompt_id}")  # noqa: S311 (a reproducible draw)
        found = [(best, draw.choice(others))] if others else []
    else:  # best_vs_others
        found = [(best, other) for other in ranked[1:] if eligible(best, other)]
    return [(a, b, margin(a, b)) for a, b in found]


def at_most(pairs: list, k: int, seed: int) -> list:
    """The k pairs of one prompt with the largest margins (``pair.margin``), equal margins
    in the seed's order; all of them, in their order, when k is 0 or they are not more."""
    if not k or len(pairs) <= k:
        return pairs
    return sorted(pairs, key=lambda p: (-p.margin, _seeded(seed, p.chosen.pk, p.rejected.pk)))[:k]
