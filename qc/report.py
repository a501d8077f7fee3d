"""The quality report of a project: coverage, agreement, per-annotator numbers, label
distributions, duplicates and the warnings the seed guides ask for.

Agreement on the preference is computed on resolved candidates, never on screen positions:
a judgment's category is the chosen candidate's rank among the item's candidates in id
order ("1", "2", …), or "tie" / "both_bad". Two annotators who saw A/B swapped and chose
the same response agree.

Graded preference (projects whose labels carry a strength): each judgment's strength signed
towards the item's first candidate (``annotation.strength``: +s, -s, 0 for a tie, nothing for
both bad) is an ordinal variable on -levels..+levels. Its agreement is reported beside the
nominal one (``STRENGTH_ROW``): Krippendorff's alpha with the ordinal metric, and a
linear-weighted Cohen's kappa for every pair of annotators (``kappa_matrix_strength``).

Thresholds (from the seed guides): "Target 70%+ agreement"; "Cohen's kappa above 0.7
indicates strong agreement. Below 0.5, the guidelines are ambiguous"; spread the load.
"""

import gc
import math
import os
import pickle
import signal
from collections import Counter, defaultdict
from collections.abc import Callable
from itertools import combinations
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Max

from annotation.adjudication import disputed_item_ids, gold_correct
from annotation.models import Adjudication, Assignment, Judgment
from qc.agreement import (
    Profiles,
    cohen_kappa_of,
    fleiss_kappa_of,
    gwet_ac1_of,
    krippendorff_alpha_of,
    percent_agreement_of,
)
from qc.tally import PREFERENCE, STRENGTH, Tally, tally_project
from tasks.models import Candidate, Project, Prompt, SignalPair
from tasks.schema import strength_levels
from tasks.text import jaccard, split_words, word_trigrams

TARGET_AGREEMENT = 0.70
KAPPA_STRONG = 0.70
KAPPA_AMBIGUOUS = 0.50
BIAS_P_VALUE = 0.01  # position bias is flagged below this two-sided binomial p-value
BIAS_MIN_JUDGMENTS = 10
LOAD_SHARE_WARNING = 0.5  # one annotator with more than half of the judgments
LABEL_SHARE_WARNING = 0.6
NEAR_IDENTICAL = 0.9  # word-shingle Jaccard similarity of two candidates of one prompt
GOLD_ACCURACY_WARNING = 0.8  # an annotator below this on gold items, with enough of them
GOLD_MIN_JUDGMENTS = 5
DIMENSION_MIN_ANSWERS = 20  # balance across a question's options is judged from this many
# The agreement row of the signed strength: not a name a question can have (NAME_RE).
STRENGTH_ROW = "preference (signed strength)"


def _round(value, digits=4):
    return None if value is None else round(value, digits)


def binomial_two_sided(k: int, n: int) -> float:
    """P-value of k successes in n fair coin flips, two-sided (exact; sums the outcomes no
    more likely than k).

    The fair coin's distribution is symmetric: those outcomes are the two tails beyond
    min(k, n - k) and max(k, n - k), each the mirror of the other. The lower tail is summed
    from its largest term outwards and stops once the terms no longer count (below 1e-17
    of the first): a few thousand terms at a million flips, not a million."""
    if n == 0:
        return 1.0
    low = min(k, n - k)
    if 2 * low == n:
        return 1.0  # k is the middle: every outcome is at most as likely
    log_term = math.lgamma(n + 1) - math.lgamma(low + 1) - math.lgamma(n - low + 1)
    log_term -= n * math.log(2)
    first, tail, i = log_term, 0.0, low
    while i >= 0 and log_term > first - 40:
        tail += math.exp(log_term)
        log_term += math.log(i) - math.log(n - i + 1) if i else 0.0  # C(n, i-1) from C(n, i)
        i -= 1
    return min(1.0, 2 * tail)


def _agreement(found: Profiles) -> dict:
    """The statistics of one question over the items rated by several annotators, from how
    many items show each pattern of ratings (``qc.tally``)."""
    return {
        "units": sum(found.values()),
        "percent_agreement": _round(percent_agreement_of(found)),
        "krippendorff_alpha": _round(krippendorff_alpha_of(found)),
        "fleiss_kappa": _round(fleiss_kappa_of(found)),
        "gwet_ac1": _round(gwet_ac1_of(found)),
    }


def compute_report(project: Project, previous: dict | None = None) -> dict:
    """The report as a JSON-ready dict, from every judgment; ``previous``, the project's
    last report, lends the sections that did not change since (``_duplicates``)."""
    return build_report(project, previous)[0]


def build_report(
    project: Project, previous: dict | None = None, tally: dict | None = None
) -> tuple[dict, dict]:
    """The report (stored as a QCReport by the job) and the tally to store with it.
    ``previous`` is the project's last report and ``tally`` what it was computed from:
    then only the judgments changed since are read (``qc.tally``).

    The cyclic garbage collector is paused meanwhile: the report holds hundreds of
    thousands of small tuples, sets and dicts at 100,000 judgments and makes no reference
    cycles, and each collection would walk all of them again (a third of the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        duplicates = _duplicates(project, (previous or {}).get("duplicates"))
        try:
            result = tally_project(project, tally)
            report = _compute_report(project, result.tally, duplicates)
        finally:
            duplicates.close()
        report["computed"] = {
            "from_last_report": result.incremental,
            "rows_read": result.judgments_read,
            "reason": result.reason,
        }
        return report, result.tally.as_json()
    finally:
        if enabled:
            gc.enable()


def _compute_report(project: Project, tally: Tally, duplicates: "Forked | Ready") -> dict:
    """The report's sections in order, each from its own function, from the tally (and
    ``duplicates``, which gives that section: ``_duplicates``)."""
    annotators = sorted(tally.person)
    emails = dict(get_user_model().objects.filter(pk__in=annotators).values_list("pk", "email"))
    levels = (
        strength_levels(project.preference_question)
        if project.mode == Project.Mode.PAIRWISE
        else None
    )
    items = tally.items[0]
    report = {
        "project": {"id": project.pk, "name": project.name, "mode": project.mode},
        "judgments": tally.total,
        "annotators": len(annotators),
        "coverage": {
            "items": items,
            "complete": tally.complete,
            "share": _round(tally.complete / items) if items else None,
        },
        "agreement": _agreement_by_question(tally, levels),
        "kappa_matrix": {
            "annotators": [emails.get(a, str(a)) for a in annotators],
            "values": _kappa_matrix(annotators, tally, PREFERENCE),
        },
        "per_annotator": _per_annotator(project, tally, annotators, emails),
        "labels": _by_count(tally.labels),
        "labels_by_answer": _labels_by_answer(tally.by_choice_label),
        "answers": _answers(project, tally.by_choice_label),
        "judgments_per_day": dict(sorted(tally.per_day.items())),
        "disagreements": _disagreements(project, tally),
        "duplicates": duplicates.result(),
        "expert_agreement_by_source": expert_agreement_by_source(project),
    }
    if levels:
        scale = list(range(-levels, levels + 1))
        report["kappa_matrix_strength"] = {
            "annotators": report["kappa_matrix"]["annotators"],
            "weights": "linear",
            "scale": scale,
            "values": _kappa_matrix(annotators, tally, STRENGTH, "linear", scale),
        }
    report["warnings"] = _warnings(report)
    return report


def _by_count(counter: Counter) -> dict:
    """Most frequent first; ties in the keys' order (the same however they were counted)."""
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def expert_agreement_by_source(project: Project) -> list[dict]:
    """How often experts agreed with each source of machine-made pairs: per rule, the pairs
    experts settled (``annotation.verification``) and the shares they confirmed, flipped and
    rejected, with how many still wait for them. Rules with nothing queued are left out."""
    Status = SignalPair.Status
    counts: dict[str, Counter] = defaultdict(Counter)
    for rule, status, n in (
        SignalPair.objects.filter(project=project, item__isnull=False)
        .values_list("rule", "status")
        .annotate(n=Count("id"))
    ):
        counts[rule][status] += n
    rows = []
    for rule in sorted(counts):
        seen = counts[rule]
        verified = seen[Status.CONFIRMED] + seen[Status.FLIPPED] + seen[Status.REJECTED]

        def share(status, seen=seen, verified=verified):
            return _round(seen[status] / verified) if verified else None

        rows.append(
            {
                "source": rule,
                "verified": verified,
                "waiting": seen[Status.TO_VERIFY],
                "confirmed": share(Status.CONFIRMED),
                "flipped": share(Status.FLIPPED),
                "rejected": share(Status.REJECTED),
            }
        )
    return rows


# --- the report's sections -----------------------------------------------------------------


def _agreement_by_question(tally: Tally, levels: int | None = None) -> dict:
    """The preference's agreement (and, for graded preference, its signed strength's),
    then each choice question's, then each rating's."""
    units = tally.units
    agreement = {"preference": _agreement(units.get(PREFERENCE, Counter()))}
    if levels:
        agreement[STRENGTH_ROW] = _strength_agreement(units.get(STRENGTH, Counter()), levels)
    for name in tally.choice_names:
        agreement[name] = _agreement(units.get(f"choice {name}", Counter()))
    for name in tally.rating_names:
        found = units.get(f"rating {name}", Counter())
        agreement[name] = {
            "units": sum(found.values()),
            "krippendorff_alpha_ordinal": _round(krippendorff_alpha_of(found, "ordinal")),
        }
    return agreement


def _strength_agreement(found: Profiles, levels: int) -> dict:
    """Agreement on the signed strength (-levels..+levels) of the items judged with a
    strength at least twice: exact agreement, Krippendorff's alpha nominal (as the other
    rows) and ordinal (a near miss, "clearly" for "much", counts less than a flip)."""
    return {
        "levels": levels,
        "units": sum(found.values()),
        "percent_agreement": _round(percent_agreement_of(found)),
        "krippendorff_alpha": _round(krippendorff_alpha_of(found)),
        "krippendorff_alpha_ordinal": _round(krippendorff_alpha_of(found, "ordinal")),
    }


def _per_annotator(project: Project, tally: Tally, annotators: list[int], emails: dict) -> list:
    """A row per annotator, in id order: load, speed, skips, agreement with the others,
    position bias, labels and gold items."""
    skipped = dict(
        Assignment.objects.filter(project=project, status=Assignment.Status.SKIPPED)
        .values_list("annotator_id")
        .annotate(n=Count("id"))
    )
    peer_shares = _peer_shares(tally)
    medians = _median_times(project)
    gold = _gold_scores(project)
    total = tally.total
    people = []
    for annotator in annotators:
        n, left, sided, labels = tally.person[annotator]
        peers = peer_shares.get(annotator)
        left_share = left / sided if sided else None
        p_value = binomial_two_sided(left, sided) if sided else None
        people.append(
            {
                "annotator": emails.get(annotator, str(annotator)),
                "judgments": n,
                "share_of_judgments": _round(n / total) if total else None,
                "median_time_ms": medians.get(annotator),
                "skip_rate": _round(skipped.get(annotator, 0) / (n + skipped.get(annotator, 0))),
                "agreement_with_peers": _round(peers[0] / peers[1]) if peers else None,
                "left_choices": left,
                "sided_choices": sided,
                "left_share": _round(left_share),
                "position_bias_p_value": _round(p_value, 6),
                "position_bias": bool(
                    p_value is not None and sided >= BIAS_MIN_JUDGMENTS and p_value < BIAS_P_VALUE
                ),
                "labels": _by_count(labels),
                **gold.get(annotator, _no_gold()),
            }
        )
    return people


def _peer_shares(tally: Tally) -> dict[int, tuple[float, int]]:
    """For each annotator: the sum over shared items of the share of the others who chose
    the same, and the number of those items."""
    shares: dict[int, tuple[float, int]] = {}
    for (annotator, same, others), n in sorted(tally.peers.items()):
        total, items = shares.get(annotator, (0.0, 0))
        shares[annotator] = (total + same / others * n, items + n)
    return shares


def _median_times(project: Project) -> dict[int, float]:
    """Each annotator's median time per judgment (ms): the middle one of their times, or the
    mean of the middle two, found by PostgreSQL in ``judgment_by_person_idx`` (project,
    annotator, time spent), whose order makes it a skip, not a sort of every judgment."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.annotator_id, (SELECT avg(t) FROM (SELECT time_spent_ms AS t "
            "FROM annotation_judgment j WHERE j.project_id = %s AND j.annotator_id = "
            "a.annotator_id ORDER BY time_spent_ms OFFSET (a.n - 1) / 2 LIMIT 2 - a.n %% 2) "
            "middle) FROM (SELECT annotator_id, count(*) AS n FROM annotation_judgment "
            "WHERE project_id = %s GROUP BY annotator_id) a",
            [project.pk, project.pk],
        )
        return {a: int(m) if m == int(m) else float(m) for a, m in cursor.fetchall()}


def _labels_by_answer(by_choice_label: dict[str, dict]) -> dict:
    """Per choice question and answer, how often each label was given."""
    return {
        name: {value: dict(c.most_common()) for value, c in sorted(table.items())}
        for name, table in by_choice_label.items()
    }


def _answers(project: Project, by_choice_label: dict[str, dict]) -> dict:
    """How often each option of each choice question was answered, in schema order."""
    questions = {q["name"]: q for q in project.questions}
    return {
        name: {
            option: sum(table.get(option, Counter()).values())
            for option in _options(questions[name], table)
        }
        for name, table in by_choice_label.items()
    }


def _options(question: dict, seen: dict) -> list[str]:
    """A choice question's options in schema order, then any other answer found."""
    listed = [str(option["value"]) for option in question.get("options", [])]
    return listed + sorted(set(seen) - set(listed))


def _no_gold() -> dict:
    return {"gold_judgments": 0, "gold_correct": 0, "gold_accuracy": None}


def _gold_scores(project: Project) -> dict[int, dict]:
    """Each annotator's judgments on gold items and how many gave the expected answer."""
    scores: dict[int, dict] = defaultdict(_no_gold)
    # The project's gold items first (item_gold_idx), then their judgments.
    gold_items = Judgment.objects.filter(project=project, item__project=project, item__gold=True)
    rows = gold_items.values_list(
        "annotator_id", "outcome", "chosen_id", "item__gold_outcome", "item__gold_chosen"
    )
    for annotator, outcome, chosen, gold_outcome, gold_chosen in rows:
        person = scores[annotator]
        person["gold_judgments"] += 1
        person["gold_correct"] += gold_correct(outcome, chosen, gold_outcome, gold_chosen)
    for person in scores.values():
        person["gold_accuracy"] = _round(person["gold_correct"] / person["gold_judgments"])
    return scores


def _disagreements(project: Project, tally: Tally) -> dict:
    """Items whose judgments differ, and how many of them have a lead's final decision."""
    decided = disputed_item_ids(project).filter(item__adjudication__isnull=False)
    return {
        "disputed_items": tally.disputed,
        "decided": decided.count(),
        "decisions_total": Adjudication.objects.filter(project=project).count(),
    }


def _kappa_matrix(
    annotators: list[int], tally: Tally, row: str, weights: str | None = None, categories=None
) -> list[list]:
    """Cohen's kappa of every pair of annotators on the items both judged (None: fewer than
    two shared items, or undefined); weighted over ordered ``categories`` when given."""
    index = {a: i for i, a in enumerate(annotators)}
    size = len(annotators)
    matrix: list[list] = [[None] * size for _ in range(size)]
    for i in range(size):
        matrix[i][i] = 1.0
    for (which, a, b), table in tally.pairs.items():
        if which != row:
            continue
        shared = sum(table.values())
        value = _round(cohen_kappa_of(table, weights, categories)) if shared >= 2 else None
        matrix[index[a]][index[b]] = matrix[index[b]][index[a]] = value
    return matrix


def near_identical(text_a: str, text_b: str) -> float | None:
    """The word-trigram Jaccard similarity of two texts (case and punctuation ignored) if it
    reaches NEAR_IDENTICAL, else None. Word sets are compared first: a changed word changes
    up to three trigrams, so texts whose word sets are less similar than the threshold are
    not near-identical either, and most pairs stop at that cheaper test."""
    a, b = split_words(text_a), split_words(text_b)
    if a == b:
        return 1.0
    if jaccard(set(a), set(b)) < NEAR_IDENTICAL:
        return None
    similarity = jaccard(word_trigrams(a), word_trigrams(b))
    return similarity if similarity >= NEAR_IDENTICAL else None


def similar_groups(texts: dict, threshold: float) -> list[dict]:
    """Groups of texts whose word sets have a Jaccard similarity of at least ``threshold``
    with another member (single linkage), each as {"members": keys, "similarity": the
    lowest similarity that joined the group}.

    Exact, without comparing every pair: PPJoin (Xiao, Wang, Lin and Yu, "Efficient
    similarity joins for near duplicate detection", WWW 2008). Words are ordered rarest
    first and sets visited smallest first; two sets of similarity >= t share a word among
    the first |x| - ceil(t|x|) + 1 words of the larger (probing prefix) and the first
    |y| - ceil(2t/(1+t)|y|) + 1 of the smaller (indexing prefix); a shared word at places i
    and j leaves room for at most 1 + min(|x| - i - 1, |y| - j - 1) more common words, and a
    pair that cannot reach the overlap t/(1+t)(|x| + |y|) is dropped. Survivors are
    measured exactly."""
    t, eps = threshold, 1e-9
    sets = {key: frozenset(split_words(text)) for key, text in texts.items()}
    sets = {key: words for key, words in sets.items() if words}
    frequency = Counter(word for words in sets.values() for word in words)
    rank = {word: n for n, word in enumerate(sorted(frequency, key=lambda w: (frequency[w], w)))}
    # Each set as its words' ranks, in order (ints sort faster than words by a key).
    records = sorted(
        ((sorted(map(rank.__getitem__, words)), key) for key, words in sets.items()),
        key=lambda record: len(record[0]),  # stable: equal sizes keep the input's order
    )
    index: dict[int, list] = defaultdict(list)
    parent = {key: key for key in sets}
    lowest: dict = {}

    def root(key):
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for tokens, key in records:
        size = len(tokens)
        overlap: dict = {}
        for i, word in enumerate(tokens[: size - math.ceil(t * size - eps) + 1]):
            for other, j, other_size in index[word]:
                if other_size < t * size - eps:
                    continue
                found = overlap.get(other, 0)
                needed = math.ceil(t / (1 + t) * (size + other_size) - eps)
                room = 1 + min(size - i - 1, other_size - j - 1)
                overlap[other] = found + 1 if found >= 0 and found + room >= needed else -1
        for i, word in enumerate(tokens[: size - math.ceil(2 * t / (1 + t) * size - eps) + 1]):
            index[word].append((key, i, size))
        mine = sets[key]
        for other, found in overlap.items():
            if found <= 0:
                continue
            theirs = sets[other]
            similarity = len(mine & theirs) / len(mine | theirs)
            if similarity >= t - eps:
                a, b = root(key), root(other)
                if a != b:
                    parent[a] = b
                    lowest[b] = min(similarity, lowest.get(a, 1.0), lowest.get(b, 1.0))
    members: dict = defaultdict(list)
    for key in sets:
        members[root(key)].append(key)
    return [
        {"members": sorted(group, key=str), "similarity": _round(lowest.get(top, 1.0))}
        for top, group in sorted(members.items(), key=lambda kv: str(kv[0]))
        if len(group) > 1
    ]


# Bump when _duplicates finds something else in the same texts: earlier reports' sections
# are then not reused.
DUPLICATES_VERSION = 1


def _texts_fingerprint(project: Project) -> list:
    """What the duplicates section is a function of. Prompts and candidates are never edited
    (a correction is a new candidate), and ids only grow: an added row raises a maximum, a
    removed one lowers a count."""
    prompts = Prompt.objects.filter(project=project).aggregate(n=Count("id"), last=Max("id"))
    candidates = Candidate.objects.filter(prompt__project=project).aggregate(
        n=Count("id"), last=Max("id")
    )
    return [
        DUPLICATES_VERSION,
        NEAR_IDENTICAL,
        settings.CHOSEN_QC_PROMPT_SIMILARITY,
        prompts["n"],
        prompts["last"],
        candidates["n"],
        candidates["last"],
    ]


def _duplicates(project: Project, previous: dict | None = None) -> "Forked | Ready":
    """Prompts with the same normalized text, in groups; prompts with nearly the same words
    (at least the CHOSEN_QC_PROMPT_SIMILARITY Jaccard similarity), in groups; pairs of a
    prompt's candidates that are nearly the same text (a comparison that teaches nothing).

    The section reads every prompt and candidate text of the project and depends on nothing
    else: when the texts are the ones the previous report saw (``fingerprint``), its
    section stands. Otherwise the texts are read here and, from FORK_FROM_TEXTS of them on,
    compared in a child process while the caller tallies the judgments: both are Python
    work (at 1,000,000 judgments about 9 s each, bench/qc_report.py), which a thread could
    not run beside the tally (the two took turns holding the interpreter's lock, and the
    report took longer). Returns what gives the section (``result()``)."""
    fingerprint = _texts_fingerprint(project)
    if previous and previous.get("fingerprint") == fingerprint:
        return Ready(previous)
    texts = _duplicate_texts(project)
    threshold = settings.CHOSEN_QC_PROMPT_SIMILARITY
    if len(texts[1]) + len(texts[2]) < FORK_FROM_TEXTS:
        return Ready(_find_duplicates(*texts, threshold, fingerprint))
    return Forked(_find_duplicates, *texts, threshold, fingerprint=fingerprint)


# How many texts (prompts and candidates) make comparing them in a child process worth its
# start (a fork of the worker, about 10-30 ms, and its pages copied as the child reads them).
FORK_FROM_TEXTS = 100_000


class Ready:
    """A result already at hand, as ``Forked`` gives one."""

    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value

    def close(self) -> None:
        pass


class Forked:
    """``function(*args, **kwargs)`` run in a child process forked from this one; ``result()``
    waits for it (and raises what it raised), ``close()`` stops a child whose result is no
    longer wanted. The child computes only: it must not touch the database, whose
    connection it shares, and leaves with ``os._exit`` (no clean-up that would close that
    connection or flush what the parent still holds). ``os.fork``, not ``multiprocessing``:
    a Celery pool process is a daemon, which multiprocessing forbids to have children."""

    def __init__(self, function: Callable, *args, **kwargs):
        reader, writer = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            status = 1
            try:
                os.close(reader)
                try:
                    payload = (True, function(*args, **kwargs))
                except Exception as exc:  # raised again in the parent
                    payload = (False, exc)
                with os.fdopen(writer, "wb") as out:
                    pickle.dump(payload, out, pickle.HIGHEST_PROTOCOL)
                status = 0
            finally:
                os._exit(status)
        os.close(writer)
        self.reader = os.fdopen(reader, "rb")

    def result(self) -> Any:
        payload = self.reader.read()
        self.close(stop=False)
        if self.status != 0:
            raise RuntimeError(f"the process comparing texts failed (exit status {self.status})")
        ok, value = pickle.loads(payload)  # noqa: S301 (written by our own child, above)
        if not ok:
            raise value
        return value

    def close(self, stop: bool = True) -> None:
        if self.pid:
            if stop:  # its result is not wanted: do not wait for it
                os.kill(self.pid, signal.SIGKILL)
            self.reader.close()
            _, status = os.waitpid(self.pid, 0)
            self.status = os.waitstatus_to_exitcode(status)
            self.pid = 0


def _duplicate_texts(project: Project) -> tuple[list, list, list]:
    """What ``_find_duplicates`` compares: the exact copies among the prompts (normalized
    content, external id), every candidate (id, prompt, text) and every prompt (normalized
    content, external id, text)."""
    groups = (
        Prompt.objects.filter(project=project)
        .values("content_hash")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    hashes = [g["content_hash"] for g in groups]
    copies = list(
        Prompt.objects.filter(project=project, content_hash__in=hashes).values_list(
            "content_hash", "external_id"
        )
    )
    candidates = list(
        Candidate.objects.filter(prompt__project=project).values_list("id", "prompt_id", "text")
    )
    prompts = list(
        Prompt.objects.filter(project=project).values_list("content_hash", "external_id", "text")
    )
    return copies, candidates, prompts


def _find_duplicates(
    copies: list, candidates: list, prompts: list, threshold: float, fingerprint: list
) -> dict:
    exact: dict[str, list] = defaultdict(list)
    for content, external in copies:
        exact[content].append(external)
    near = []
    by_prompt: dict[int, list] = defaultdict(list)
    for candidate_id, prompt_id, text in candidates:
        by_prompt[prompt_id].append((candidate_id, text))
    for prompt_id, pairs in by_prompt.items():
        for (a, text_a), (b, text_b) in combinations(pairs, 2):
            similarity = near_identical(text_a, text_b)
            if similarity is not None:
                near.append(
                    {"prompt": prompt_id, "candidates": [a, b], "similarity": _round(similarity)}
                )
    # One text per normalized content (exact copies are reported above), named by the
    # external ids that carry it.
    texts, names = {}, defaultdict(list)
    for content, external, text in prompts:
        texts.setdefault(content, text)
        names[content].append(external)
    near_prompts = [
        {
            "prompts": sorted(
                external for content in group["members"] for external in names[content]
            ),
            "similarity": group["similarity"],
        }
        for group in similar_groups(texts, threshold)
    ]
    return {
        "exact_prompt_groups": list(exact.values()),
        "prompt_similarity_threshold": threshold,
        "near_duplicate_prompt_groups": near_prompts,
        "near_identical_candidates": near,
        "fingerprint": fingerprint,
    }


def _warnings(report: dict) -> list[str]:
    warnings = []
    preference = report["agreement"]["preference"]
    kappa = preference["fleiss_kappa"]
    if kappa is not None and kappa < KAPPA_AMBIGUOUS:
        warnings.append(
            f"Preference kappa {kappa:.2f} is below {KAPPA_AMBIGUOUS}: the guidelines are "
            "ambiguous; discuss the disagreements and sharpen them."
        )
    agreement = preference["percent_agreement"]
    if agreement is not None and agreement < TARGET_AGREEMENT:
        warnings.append(
            f"Preference agreement {agreement:.0%} is below the {TARGET_AGREEMENT:.0%} target."
        )
    for person in report["per_annotator"]:
        if person["position_bias"]:
            warnings.append(
                f"{person['annotator']} picks the left response {person['left_share']:.0%} of "
                f"the time (p = {person['position_bias_p_value']:.2g}): position bias."
            )
        if report["annotators"] > 1 and (person["share_of_judgments"] or 0) > LOAD_SHARE_WARNING:
            warnings.append(
                f"{person['annotator']} made {person['share_of_judgments']:.0%} of the "
                "judgments: spread the load across annotators."
            )
        if person["gold_judgments"] >= GOLD_MIN_JUDGMENTS and (
            person["gold_accuracy"] < GOLD_ACCURACY_WARNING
        ):
            warnings.append(
                f"{person['annotator']} answered {person['gold_accuracy']:.0%} of "
                f"{person['gold_judgments']} gold items as expected (below "
                f"{GOLD_ACCURACY_WARNING:.0%}): check their attention and the guidelines."
            )
    total = report["judgments"]
    for label, n in report["labels"].items():
        if total >= 10 and n / total > LABEL_SHARE_WARNING:
            warnings.append(f'"{label}" is {n / total:.0%} of all judgments: check the balance.')
    warnings.extend(_balance_warnings(report))
    duplicates = report["duplicates"]
    if duplicates["exact_prompt_groups"]:
        warnings.append(f"{len(duplicates['exact_prompt_groups'])} group(s) of duplicate prompts.")
    if duplicates["near_duplicate_prompt_groups"]:
        warnings.append(
            f"{len(duplicates['near_duplicate_prompt_groups'])} group(s) of near-duplicate prompts "
            f"(word similarity >= {duplicates['prompt_similarity_threshold']:.0%})."
        )
    open_disputes = report["disagreements"]["disputed_items"] - report["disagreements"]["decided"]
    if open_disputes:
        warnings.append(
            f"{open_disputes} disputed item(s) wait for a decision: resolve them through "
            "discussion, not majority vote."
        )
    return warnings


def _balance_warnings(report: dict) -> list[str]:
    """The seed guide: "If 80% of your pairs address tone and 5% address accuracy, the model
    will align strongly on tone but weakly on accuracy." An option of a choice question (an
    alignment dimension) with less than half of an even share is flagged, and so is one
    label taking most of the judgments within an option."""
    warnings = []
    for name, counts in report["answers"].items():
        total = sum(counts.values())
        if total < DIMENSION_MIN_ANSWERS or len(counts) < 2:
            continue
        even = 1 / len(counts)
        for option, n in counts.items():
            if n / total < even / 2:
                warnings.append(
                    f'{name} "{option}" is {n / total:.0%} of the answers (an even share is '
                    f"{even:.0%}): balance the pairs across {name}."
                )
    for name, table in report["labels_by_answer"].items():
        for option, labels in table.items():
            total = sum(labels.values())
            top, n = max(labels.items(), key=lambda kv: kv[1], default=("", 0))
            if total >= 10 and n / total > LABEL_SHARE_WARNING:
                warnings.append(
                    f'When {name} is "{option}", "{top}" is {n / total:.0%} of the judgments: '
                    "check the balance."
                )
    return warnings
