"""The AI judge held to the human standard: its agreement with the human majority, beside
each annotator's agreement with the majority of the *other* annotators (leave-one-out, so
no one is compared with a majority that contains their own vote).

Both are Cohen's kappa and percent agreement (qc.agreement) over the items the rater and
the majority both decided, on categories relative to the item — "first" / "second" (its
candidates by id), "tie", "both_bad" — so that the categories mean the same on every item.
A majority is the most frequent category when it is strictly the most frequent; an item
whose people split evenly has none and is left out. The judge's decision is that of the
project's newest succeeded run (annotation.judge); an unparsed one is left out.

Computed on request (the dashboard), not stored in the QC report: the report is another
job's, and the judge's run can be newer than it."""

from collections import Counter, defaultdict

from annotation import judge as ai_judge
from annotation.models import JudgeDecision, Judgment
from qc.agreement import cohen_kappa, percent_agreement


def _first_ids(project) -> dict[int, int]:
    """Pair item → its first candidate's id (candidate keys are sorted ids, "12-57")."""
    return {item.pk: int(item.candidate_key.split("-")[0]) for item in ai_judge.pair_items(project)}


def _category(outcome: str, chosen_id: int | None, first_id: int) -> str | None:
    if outcome == "preferred" and chosen_id is not None:
        return "first" if chosen_id == first_id else "second"
    if outcome in ("tie", "both_bad"):
        return outcome
    return None  # unparsed, or a ranking


def _majority(votes: list[str]) -> str | None:
    ranked = Counter(votes).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def _row(rater: str, pairs: list[tuple[str, str]], *, is_judge: bool) -> dict:
    rated = [x for x, _ in pairs]
    majority = [y for _, y in pairs]
    kappa = cohen_kappa(rated, majority) if pairs else None
    percent = percent_agreement([[x, y] for x, y in pairs]) if pairs else None
    return {
        "rater": rater,
        "judge": is_judge,
        "items": len(pairs),
        "kappa": None if kappa is None else round(kappa, 4),
        "percent": None if percent is None else round(percent, 4),
    }


def judge_agreement(project) -> dict | None:
    """{"run", "model", "figures" (the run's own), "rows": [the judge's row, then one per
    annotator]}; None when the project has no succeeded judge run."""
    run = ai_judge.latest_run(project)
    if run is None:
        return None
    first = _first_ids(project)
    votes: dict[int, dict[str, str]] = defaultdict(dict)
    judgments = Judgment.objects.filter(project=project, item_id__in=list(first)).values_list(
        "item_id", "annotator__email", "outcome", "chosen_id"
    )
    for item_id, person, outcome, chosen_id in judgments:
        category = _category(outcome, chosen_id, first[item_id])
        if category is not None:
            votes[item_id][person] = category
    decisions = JudgeDecision.objects.filter(run=run, item_id__in=list(first)).values_list(
        "item_id", "outcome", "chosen_id"
    )
    judge_pairs = []
    for item_id, outcome, chosen_id in decisions:
        decided = _category(outcome, chosen_id, first[item_id])
        majority = _majority(list(votes.get(item_id, {}).values()))
        if decided is not None and majority is not None:
            judge_pairs.append((decided, majority))
    people: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for item_votes in votes.values():
        for person, category in item_votes.items():
            others = _majority([c for p, c in item_votes.items() if p != person])
            if others is not None:
                people[person].append((category, others))
    rows = [_row(f"AI judge ({run.model})", judge_pairs, is_judge=True)]
    rows += [_row(person, pairs, is_judge=False) for person, pairs in sorted(people.items())]
    return {"run": run.pk, "model": run.model, "figures": run.figures, "rows": rows}
