"""The leaderboard: which model, variant or recipe produces the answers annotators choose.

Battles come from the judgments (as in a private "arena", FastChat's leaderboard): every
judgment that orders two candidates of different sources is one battle —

- pairwise: chosen beats rejected; a tie is a tie (½ each); both-bad is no battle;
- best / worst of N: the best beats each other candidate, each other one beats the worst
  (the pairs a best/worst answer implies; nothing is said between the middle ones);
- ranking: every ordered pair of the ranking.

Judgments of verification items (experts checking machine-made pairs) are left out, as
exports leave them out of judged pairs. Every judgment counts once, as a vote in an arena
does: adjudications settle a disputed item for the dataset, not the strength of a source.
Pairs of candidates from one source say nothing about sources and are dropped. The
bootstrap resamples battles, as FastChat does (the several battles of one ranking are
treated as independent, which narrows intervals a little).

A candidate's source, per leaderboard (``SOURCE_KINDS``):

- ``model``: ``Candidate.model``, or ``"<source>:<source_key>"`` when the row named no
  model (an imported ``response_a`` column is ``imported:response_a``);
- ``variant``: the model and how it was asked: a generated candidate's variant name and
  key (the key hashes the model and exact parameters: temperature, system prompt, …), an
  imported one's parameters as imported;
- ``recipe``: the generation recipe a generated candidate records in its parameters
  (``tasks.generation._store``); a candidate that was not generated has no recipe and
  stands for its model source, so imported references still compete.

The judgments stream from the database in chunks; only one number per candidate (its
source and length) is held, and battles are aggregated before fitting
(``annotation.bradley_terry``).
"""

from __future__ import annotations

import json
from array import array
from itertools import combinations

from django.db.models import Exists, OuterRef, TextField
from django.db.models.functions import Cast, Length

from annotation import bradley_terry as bt
from annotation.models import Judgment
from project.lazy import lazy_module
from tasks.models import Candidate, Project, SignalPair

np = lazy_module("numpy")  # loaded by the first leaderboard

SOURCE_KINDS = ("model", "variant", "recipe")
# Parameters that name a variant of an imported candidate (generated ones have their key).
VARIANT_PARAMETERS = ("temperature", "top_p", "system_prompt")
MIN_BATTLES = 20  # below this a leaderboard says its numbers are anecdotes


def source_label(kind: str, model: str, source: str, source_key: str, parameters) -> str:
    """The name of a candidate's source under ``kind`` (see the module's docstring)."""
    parameters = parameters if isinstance(parameters, dict) else {}
    by_model = model or f"{source}:{source_key or '-'}"
    if kind == "recipe":
        recipe = parameters.get("recipe")
        return f"recipe:{recipe}" if source == "generated" and recipe else by_model
    if kind == "variant":
        if source == "generated":
            name = parameters.get("variant") or "variant"
            return f"{by_model} · {name} ({source_key.removeprefix('gen:')[:8]})"
        asked = [
            f"{key}={_short(parameters[key])}" for key in VARIANT_PARAMETERS if key in parameters
        ]
        return f"{by_model} · {', '.join(asked)}" if asked else by_model
    return by_model


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:39] + "…"


class Sources:
    """Every candidate in scope mapped to its source's index and its length in characters."""

    def __init__(self, candidates, kind: str):
        self.names: list[str] = []
        index: dict[str, int] = {}
        self.of: dict[int, tuple[int, int]] = {}
        rows = candidates.annotate(length=Length("text")).values_list(
            "id", "model", "source", "source_key", "parameters", "length"
        )
        for pk, model, source, key, parameters, length in rows.iterator(chunk_size=5000):
            name = source_label(kind, model, source, key, parameters)
            if name not in index:
                index[name] = len(self.names)
                self.names.append(name)
            self.of[pk] = (index[name], length)


def implied_pairs(outcome, chosen, rejected, ranking, candidate_key, mode):
    """(a, b, y) candidate battles one judgment states: y 1 when a won, ½ for a tie."""
    if outcome == Judgment.Outcome.PREFERRED and chosen and rejected:
        return [(chosen, rejected, 1.0)]
    if outcome == Judgment.Outcome.TIE:
        ids = [int(c) for c in candidate_key.split("-") if c]
        return [(a, b, 0.5) for a, b in combinations(ids, 2)]
    if outcome != Judgment.Outcome.RANKED:
        return []  # both bad: no battle
    if mode == Project.Mode.RANKING and ranking:
        return [(int(a), int(b), 1.0) for a, b in combinations(ranking, 2)]
    if chosen and rejected:
        others = [
            int(c) for c in candidate_key.split("-") if c and int(c) not in (chosen, rejected)
        ]
        return [
            (chosen, rejected, 1.0),
            *((chosen, other, 1.0) for other in others),
            *((other, rejected, 1.0) for other in others),
        ]
    return []


def judgments_in(organization, project: Project | None):
    """The judgments a leaderboard counts: a project's, or all of the organization's."""
    judgments = Judgment.objects.filter(organization=organization)
    if project is not None:
        judgments = judgments.filter(project=project)
    verifies = SignalPair.objects.filter(item_id=OuterRef("item_id"))
    return judgments.exclude(Exists(verifies))


def candidates_in(organization, project: Project | None):
    candidates = Candidate.objects.filter(organization=organization)
    if project is not None:
        candidates = candidates.filter(prompt__project=project)
    return candidates


def compute_leaderboard(
    organization,
    project: Project | None = None,
    *,
    kind: str = "model",
    length_control: bool = False,
    rounds: int = bt.DEFAULT_ROUNDS,
    seed: int = 0,
) -> dict:
    """The leaderboard as stored and shown: sources by rating with 95% intervals, their
    records, the win-rate matrix and, with ``length_control``, the length-controlled
    ratings and the length coefficient."""
    if kind not in SOURCE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SOURCE_KINDS)}")
    sources = Sources(candidates_in(organization, project), kind)
    a, b, y, length_a, length_b = array("i"), array("i"), array("d"), array("l"), array("l")
    judgments = 0
    rows = (
        judgments_in(organization, project)
        .annotate(ranking_text=Cast("ranking", TextField()))
        .order_by()
        .values_list(
            "outcome",
            "chosen_id",
            "rejected_id",
            "ranking_text",
            "item__candidate_key",
            "item__mode",
        )
    )
    for outcome, chosen, rejected, ranking, key, mode in rows.iterator(chunk_size=5000):
        judgments += 1
        ranked = json.loads(ranking) if ranking and ranking != "[]" else []
        for first, second, result in implied_pairs(outcome, chosen, rejected, ranked, key, mode):
            if first not in sources.of or second not in sources.of:
                continue
            (i, li), (j, lj) = sources.of[first], sources.of[second]
            if i == j:
                continue
            a.append(i), b.append(j), y.append(result), length_a.append(li), length_b.append(lj)
    return _table(
        sources.names, judgments, a, b, y, length_a, length_b, length_control, rounds, seed
    )


def _table(names, judgments, a, b, y, length_a, length_b, length_control, rounds, seed) -> dict:
    a, b, y = np.frombuffer(a, np.int32), np.frombuffer(b, np.int32), np.frombuffer(y, float)
    played = sorted(set(a.tolist()) | set(b.tolist()))
    # Only sources that battled are ranked; indexes are renumbered to them.
    renumber = np.full(len(names), -1)
    renumber[played] = np.arange(len(played))
    names = [names[i] for i in played]
    a, b = renumber[a] if len(a) else a, renumber[b] if len(b) else b
    table = bt.Table.from_battles(len(names), a, b, y)
    data = {
        "judgments": judgments,
        "battles": int(len(y)),
        "ties": int(np.count_nonzero(y == 0.5)),
        "method": (
            "Bradley–Terry maximum likelihood (Newton), ties as half wins, ridge prior "
            f"alpha={bt.DEFAULT_ALPHA}; 95% percentile bootstrap over battles, {rounds} rounds, "
            f"seed {seed}; ratings 1000 + 400·θ/ln 10"
        ),
        "rounds": rounds,
        "seed": seed,
        "warnings": [],
        "sources": [],
        "win_rate": {"sources": [], "values": []},
        "length_control": None,
    }
    if not names:
        data["warnings"].append("No battles yet: no judgment ordered candidates of two sources.")
        return data
    if len(y) < MIN_BATTLES:
        data["warnings"].append(
            f"Only {len(y)} battles: the intervals are wide and the order may change."
        )
    if not _connected(len(names), table):
        data["warnings"].append(
            "Some sources never met, directly or through others: their ratings are not "
            "comparable across the groups."
        )
    fitted = bt.bootstrap(table, rounds=rounds, seed=seed)
    wins, games = bt.win_matrix(table)
    order = sorted(range(len(names)), key=lambda i: (-fitted.theta[i], names[i]))
    ratings = bt.rating(fitted.theta)
    lower, upper = bt.rating(fitted.lower), bt.rating(fitted.upper)
    for rank, i in enumerate(order, start=1):
        total = games[i].sum()
        score = wins[i].sum()
        ties = _ties_of(table, i)
        data["sources"].append(
            {
                "rank": rank,
                "source": names[i],
                "rating": round(float(ratings[i]), 2),
                "lower": round(float(lower[i]), 2),
                "upper": round(float(upper[i]), 2),
                "strength": round(float(fitted.theta[i]), 6),
                "battles": int(total),
                "wins": int(round(score - ties / 2)),
                "ties": int(ties),
                "losses": int(total - round(score - ties / 2) - ties),
                "win_rate": round(float(score / total), 4) if total else None,
            }
        )
    data["win_rate"] = {
        "sources": [names[i] for i in order],
        "values": [
            [round(float(wins[i, j] / games[i, j]), 4) if games[i, j] else None for j in order]
            for i in order
        ],
    }
    if length_control:
        z = bt.standardized(np.frombuffer(length_a, np.int64), np.frombuffer(length_b, np.int64))
        controlled = bt.bootstrap(
            bt.Table(len(names), a.astype(int), b.astype(int), y, np.ones(len(y)), z),
            rounds=rounds,
            seed=seed,
        )
        ratings, lower, upper = (
            bt.rating(v) for v in (controlled.theta, controlled.lower, controlled.upper)
        )
        data["length_control"] = {
            "coefficient": round(controlled.length_coefficient, 6),
            "interval": [round(v, 6) for v in controlled.length_interval],
            "explains": "log-odds of winning per typical (root mean square) normalized length "
            "difference (len_a − len_b)/(len_a + len_b); above 0: longer answers win more",
            "sources": [
                {
                    "source": names[i],
                    "rating": round(float(ratings[i]), 2),
                    "lower": round(float(lower[i]), 2),
                    "upper": round(float(upper[i]), 2),
                }
                for i in sorted(range(len(names)), key=lambda i: (-controlled.theta[i], names[i]))
            ],
        }
    return data


def _ties_of(table: bt.Table, i: int) -> float:
    tied = (table.y == 0.5) & ((table.a == i) | (table.b == i))
    return float(table.count[tied].sum())


def _connected(size: int, table: bt.Table) -> bool:
    """Whether every source is linked to every other by a chain of battles."""
    parent = list(range(size))

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, z in zip(table.a.tolist(), table.b.tolist(), strict=True):
        parent[root(x)] = root(z)
    return len({root(x) for x in range(size)}) == 1
