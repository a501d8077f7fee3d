"""The pair builder: chosen-over-rejected pairs (``SignalPair``) and single-reply KTO rows
(``KTOExample``) from a project's ``FeedbackSignal`` rows, each with a confidence in 0..1
and the reason in words.

How each rule reads the signals (``FeedbackSignal`` explains what ``reply`` and ``other``
hold for each kind):

- **edit** (a ``feedback`` signal with ``other`` and no ``data["kept"]``: ``other`` is the
  user's edit of ``reply``): the edit over the original, confidence 0.9 — a user who
  rewrites a reply tells us exactly what they wanted, though not that every change is
  better. An edit that changes only punctuation gets 0.6 (it goes to an expert: often a
  matter of taste); one that changes only case, Unicode form or spacing
  (``tasks.text.normalize_text`` equal) makes no pair at all (``trivial_edit``).
- **regeneration** (a ``feedback`` signal with ``other`` and ``data["kept"]``: "reply" if
  the user kept ``reply``; "other", "regenerated_from" or "regenerated" if they kept
  ``other``): the kept reply over the discarded one, confidence 0.7 — users keep the last
  regeneration for many reasons (curiosity, the UI shows the newest, both were fine), so by
  default these go to experts. Any other ``kept`` value makes no pair (``unclear_kept``); a
  regeneration that does not say which reply was kept (``data["relation"]`` is
  "regeneration", no ``kept``) makes none either. Open WebUI's rating of one of two sibling
  replies (``data["relation"]`` "sibling", thumbs ±1; an arena vote or a regenerated turn)
  is read the same way: the reply rated up over its sibling, or the sibling over the reply
  rated down; a draw makes no pair.
- An edit is a ``feedback`` signal with ``other``, no ``kept`` and ``data["relation"]``
  "edit" or absent.
- **thumbs** (``feedback`` signals with ``thumbs``): replies to the same conversation —
  same prompt and same ``conversation_key``, so the same last user turn after a different
  history never pairs — count their votes, one per user (a user's latest vote on a reply;
  signals without a user count alone). A reply with more ups than downs is paired over one
  with more downs than ups, with confidence P(θ₁ > θ₂), θ ~ Beta(1 + ups, 1 + downs) (one
  up against one down: 5/6). At most ``THUMBS_SIDE`` best-liked × ``THUMBS_SIDE``
  most-disliked replies per conversation pair up (popular prompts would otherwise make
  pairs quadratic in their replies; further pairs restate the same preference), the rest
  is counted as ``capped``.
- **ab_test** (``reply`` is variant A, ``other`` variant B; ``data``: ``wins_a``,
  ``wins_b`` and optionally ``impressions_a``, ``impressions_b``, or only ``winner``
  "a"/"b"): the tests of the same two variants are summed; without impressions each win of
  one is a loss of the other (impressions = wins_a + wins_b for both), a ``winner`` row is
  one such head-to-head. The winner is paired when the beta-binomial posterior
  P(p_winner > p_loser), p ~ Beta(1 + wins, 1 + impressions − wins), is at least the
  project's ``ab_confidence``; that probability is the confidence. Below it, no pair
  (``not_significant``); counts that make no sense (negative, wins above impressions) are
  ``invalid_ab``.
- **grade** (``score`` on 0..1): per prompt each output's mean score over its reviews;
  two outputs pair when the means differ by at least ``grade_margin``, confidence
  Φ(margin / (σ·√(1/n₁ + 1/n₂))) with n the reviewers of each output and σ = 0.25 the
  spread of one reviewer's grade (about one step of a five-point scale): the normal
  approximation of P(the true mean difference is positive). At most ``GRADE_PAIRS`` pairs
  per prompt, the widest margins first.
- **correction** (``reply`` the original, ``other`` the expert's correction): the
  correction over the original, confidence 0.95 (an expert wrote it for this purpose);
  a correction that changes nothing but case or spacing makes no pair.

- **style_rule** (no signals: generated candidates whose ``parameters`` carry
  ``style_rules``, made by a recipe from ``tasks.feedback.rules``): per prompt and recipe,
  among candidates made from the same list of rules, the one asked to follow every rule
  (``rules:follows``) over each one asked to break rule n (``rules:violates:<n>``), the
  reason naming rule n; confidence 0.75 and evidence ``[]`` (the candidates' recorded
  parameters are the evidence). Below the default ``verify_below``, so these go to experts:
  the pair says what the model was *asked* to do, and a small model often fails to break a
  rule as asked (or breaks one while asked to follow them all); only an expert's judgment
  says the text did. Projects with a larger model can lower ``verify_below`` to accept
  them.

Several signals of one rule for the same two replies make one pair with all of them as
evidence; for edit, regeneration and correction the confidence is combined as if they
were independent, 1 − Π(1 − cᵢ), at most 0.99.

**Contradictions**: when the signals say A over B and also B over A (by any rules, or
against an expert's confirmed or flipped verdict), every such pair is ``contradicted``
(never exported) and its reason names the other side.

**Status**: ``accepted`` from the project's ``verify_below`` up, else ``to_verify``; in
addition ``audit_sample_percent`` of the accepted go to experts as an audit, chosen by a
hash of the pair's candidate ids and rule, so every rebuild picks the same ones.

**KTO rows**: every ``feedback`` signal with a thumbs, a rating (``score``) or a complaint
becomes one row: desirable for thumbs up or a score ≥ ``kto_desirable``, undesirable for
thumbs down, a score ≤ ``kto_undesirable`` or a complaint. Signals whose parts disagree
(thumbs up on a complained-about reply) or whose rating is in between make none. Rule
``thumbs`` when a thumbs was given, ``rating`` otherwise. Confidence: a complaint 0.9 (the
user took the trouble), a thumbs 0.8, a rating 0.6 at its threshold rising to 1.0 at the
end of the scale; the highest that applies.

**Rebuilding** after more signals arrived, or with other settings: pairs the experts have
judged (confirmed, flipped, rejected) are left exactly as they are, item included; the
others are recomputed: updated, added, and removed when no rule makes them any more
(unless an item already puts them before experts).
"""

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Count
from psycopg import sql

from tasks.feedback.settings import pair_settings
from tasks.models import KTOExample, Project, Rule, SignalPair
from tasks.text import normalize_text, split_words

EDIT_CONFIDENCE = 0.9
PUNCTUATION_EDIT_CONFIDENCE = 0.6
REGENERATION_CONFIDENCE = 0.7
CORRECTION_CONFIDENCE = 0.95
COMBINED_CEILING = 0.99
GRADE_SPREAD = 0.25
THUMBS_SIDE = 5
GRADE_PAIRS = 25
STYLE_RULE_CONFIDENCE = 0.75
KTO_COMPLAINT_CONFIDENCE = 0.9
KTO_THUMBS_CONFIDENCE = 0.8
KTO_RATING_CONFIDENCE = 0.6
# Beyond this many terms the exact sum gives way to the normal approximation.
EXACT_TERMS = 20_000

KEPT_REPLY = {"reply"}
KEPT_OTHER = {"other", "regenerated_from", "regenerated"}
EXPERT_STATUSES = (
    SignalPair.Status.CONFIRMED,
    SignalPair.Status.FLIPPED,
    SignalPair.Status.REJECTED,
)
MACHINE_STATUSES = (
    SignalPair.Status.ACCEPTED,
    SignalPair.Status.TO_VERIFY,
    SignalPair.Status.CONTRADICTED,
)
SKIPPED = (
    "trivial_edit",
    "unclear_kept",
    "not_significant",
    "invalid_ab",
    "capped",
    "kto_in_between",
    "kto_conflicting",
)


# --- the statistics ------------------------------------------------------------------------


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def prob_greater(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X > Y) for independent X ~ Beta(a1, b1), Y ~ Beta(a2, b2), integer parameters ≥ 1.

    Exact: the closed form for integer parameters (Evan Miller, "Formulas for Bayesian A/B
    Testing", 2015; Cook, "Exact calculation of beta inequalities", 2005),
    P(X > Y) = Σ_{i=0}^{a1−1} B(a2+i, b1+b2) / ((b1+i) · B(1+i, b1) · B(a2, b2)),
    summed over the smaller of a1 and a2 (P(X > Y) = 1 − P(Y > X), ties having probability
    zero), term by term in logarithms. When both exceed ``EXACT_TERMS`` the Betas are
    nearly normal and the difference of two normals with their means and variances is used
    (error far below the thresholds' precision at such counts).
    """
    if min(a1, b1, a2, b2) < 1:
        raise ValueError("Beta parameters must be at least 1.")
    if min(a1, a2) > EXACT_TERMS:
        mean = a1 / (a1 + b1) - a2 / (a2 + b2)
        var = a1 * b1 / ((a1 + b1) ** 2 * (a1 + b1 + 1)) + a2 * b2 / (
            (a2 + b2) ** 2 * (a2 + b2 + 1)
        )
        return _normal_cdf(mean / math.sqrt(var))
    if a1 > a2:
        return 1.0 - prob_greater(a2, b2, a1, b1)
    base = _log_beta(a2, b2)
    total = 0.0
    for i in range(a1):
        total += math.exp(
            _log_beta(a2 + i, b1 + b2) - math.log(b1 + i) - _log_beta(1 + i, b1) - base
        )
    return min(1.0, max(0.0, total))


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def grade_confidence(margin: float, reviewers_a: int, reviewers_b: int) -> float:
    """P(the higher mean grade is truly higher): Φ(margin / (σ√(1/n₁ + 1/n₂))), σ =
    ``GRADE_SPREAD`` (see the module's docstring)."""
    spread = GRADE_SPREAD * math.sqrt(1 / reviewers_a + 1 / reviewers_b)
    return _normal_cdf(margin / spread)


def combined(confidence: float, signals: int) -> float:
    """Independent signals saying the same: 1 − (1 − c)ⁿ, at most ``COMBINED_CEILING``."""
    if signals <= 1:
        return confidence
    return max(confidence, min(COMBINED_CEILING, 1 - (1 - confidence) ** signals))


def audit_sampled(chosen_id: int, rejected_id: int, rule: str, percent: float) -> bool:
    """Whether an accepted pair is in the audit sample: a hash of its ids, so a rebuild
    (or another machine) picks the same pairs."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{chosen_id}:{rejected_id}:{rule}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 10_000 < percent * 100


# --- what the rules propose ----------------------------------------------------------------


@dataclass(slots=True)
class Proposal:
    prompt_id: int
    chosen_id: int
    rejected_id: int
    rule: str
    confidence: float
    reason: str
    evidence: list[int] = field(default_factory=list)
    status: str = ""


class _Builder:
    def __init__(self, project: Project, settings: dict):
        self.project = project
        self.settings = settings
        self.proposals: dict[tuple[int, int, str], Proposal] = {}
        self.skipped = dict.fromkeys(SKIPPED, 0)

    def propose(self, proposal: Proposal) -> None:
        self.proposals[(proposal.chosen_id, proposal.rejected_id, proposal.rule)] = proposal

    def rows(self, query: str, params: dict, size: int = 5_000):
        """The rows of a query, fetched in batches through a server-side cursor so that a
        million signals never sit in memory at once."""
        with connection.connection.cursor(name="signal_pairs_rows") as cursor:
            cursor.execute(query, params)
            while batch := cursor.fetchmany(size):
                yield from batch

    # edit and correction ---------------------------------------------------------------

    def rewrites(self) -> None:
        query = """
            SELECT g.kind, g.prompt_id, g.reply_id, g.other_id, g.ids, r.text, o.text
            FROM (
                SELECT kind, prompt_id, reply_id, other_id, array_agg(id ORDER BY id) AS ids
                FROM tasks_feedbacksignal
                WHERE project_id = %(project)s AND reply_id IS NOT NULL
                  AND other_id IS NOT NULL AND other_id <> reply_id
                  AND (kind = 'correction' OR (kind = 'feedback' AND NOT data ? 'kept'
                       AND coalesce(data ->> 'relation', 'edit') = 'edit'))
                GROUP BY kind, prompt_id, reply_id, other_id
            ) g
            JOIN tasks_candidate r ON r.id = g.reply_id AND r.prompt_id = g.prompt_id
            JOIN tasks_candidate o ON o.id = g.other_id AND o.prompt_id = g.prompt_id
        """
        for kind, prompt_id, reply_id, other_id, ids, original, rewritten in self.rows(
            query, {"project": self.project.pk}
        ):
            if normalize_text(original) == normalize_text(rewritten):
                self.skipped["trivial_edit"] += len(ids)
                continue
            who = f"{len(ids)} users" if len(ids) > 1 else "the user"
            if kind == "correction":
                rule, confidence = Rule.CORRECTION, CORRECTION_CONFIDENCE
                experts = f"{len(ids)} experts" if len(ids) > 1 else "an expert"
                reason = f"Correction: {experts} corrected the original output."
            elif split_words(original) == split_words(rewritten):
                rule, confidence = Rule.EDIT, PUNCTUATION_EDIT_CONFIDENCE
                reason = f"User edit: {who} changed only the punctuation of the reply."
            else:
                rule, confidence = Rule.EDIT, EDIT_CONFIDENCE
                reason = f"User edit: {who} rewrote the reply; the edit over the original."
            self.propose(
                Proposal(
                    prompt_id, other_id, reply_id, rule, combined(confidence, len(ids)),
                    reason, list(ids),
                )
            )  # fmt: skip

    # regeneration ----------------------------------------------------------------------

    def regenerations(self) -> None:
        query = """
            SELECT g.prompt_id, g.reply_id, g.other_id, g.kept, g.ids, g.rated
            FROM (
                SELECT prompt_id, reply_id, other_id, rated,
                       CASE WHEN rated THEN CASE WHEN thumbs > 0 THEN 'reply' ELSE 'other' END
                            ELSE data ->> 'kept' END AS kept,
                       array_agg(id ORDER BY id) AS ids
                FROM (
                    SELECT *, data ->> 'relation' = 'sibling' AND thumbs IN (1, -1) AS rated
                    FROM tasks_feedbacksignal
                    WHERE project_id = %(project)s AND kind = 'feedback'
                ) s
                WHERE (data ? 'kept' OR rated)
                  AND reply_id IS NOT NULL AND other_id IS NOT NULL AND other_id <> reply_id
                GROUP BY prompt_id, reply_id, other_id, rated, 5
            ) g
            JOIN tasks_candidate r ON r.id = g.reply_id AND r.prompt_id = g.prompt_id
            JOIN tasks_candidate o ON o.id = g.other_id AND o.prompt_id = g.prompt_id
        """
        for prompt_id, reply_id, other_id, kept, ids, rated in self.rows(
            query, {"project": self.project.pk}
        ):
            kept = (kept or "").strip().lower()
            if rated:  # Open WebUI: a reply rated up or down beside its sibling
                chosen, rejected = (reply_id, other_id) if kept == "reply" else (other_id, reply_id)
                which = f"rated {'up' if kept == 'reply' else 'down'} one of two replies"
            elif kept in KEPT_REPLY:
                chosen, rejected, which = reply_id, other_id, "the reply over the regenerated one"
            elif kept in KEPT_OTHER:
                chosen, rejected, which = other_id, reply_id, "the regenerated reply over the other"
            else:
                self.skipped["unclear_kept"] += len(ids)
                continue
            key = (chosen, rejected, Rule.REGENERATION)
            earlier = self.proposals.get(key)
            evidence = sorted([*ids, *(earlier.evidence if earlier else [])])
            who = f"{len(evidence)} users" if len(evidence) > 1 else "the user"
            self.propose(
                Proposal(
                    prompt_id, chosen, rejected, Rule.REGENERATION,
                    combined(REGENERATION_CONFIDENCE, len(evidence)),
                    f"Regeneration: {who} {which if rated else 'kept ' + which}.", evidence,
                )
            )  # fmt: skip

    # thumbs ----------------------------------------------------------------------------

    def thumbs(self) -> None:
        query = """
            WITH votes AS (
                SELECT DISTINCT ON (prompt_id, conversation_key, reply_id,
                                    COALESCE(NULLIF(user_hash, ''), id::text))
                       id, prompt_id, conversation_key, reply_id, thumbs
                FROM tasks_feedbacksignal
                WHERE project_id = %(project)s AND kind = 'feedback' AND thumbs IN (1, -1)
                  AND reply_id IS NOT NULL
                ORDER BY prompt_id, conversation_key, reply_id,
                         COALESCE(NULLIF(user_hash, ''), id::text),
                         occurred_at DESC NULLS LAST, id DESC
            ), per_reply AS (
                SELECT v.prompt_id, v.conversation_key, v.reply_id,
                       count(*) FILTER (WHERE v.thumbs = 1) AS ups,
                       count(*) FILTER (WHERE v.thumbs = -1) AS downs,
                       array_agg(v.id ORDER BY v.id) AS ids
                FROM votes v
                GROUP BY v.prompt_id, v.conversation_key, v.reply_id
            ), marked AS (
                SELECT p.*,
                       count(*) FILTER (WHERE ups > downs) OVER conversation AS liked,
                       count(*) FILTER (WHERE downs > ups) OVER conversation AS disliked
                FROM per_reply p
                JOIN tasks_candidate c ON c.id = p.reply_id AND c.prompt_id = p.prompt_id
                WINDOW conversation AS (PARTITION BY p.prompt_id, p.conversation_key)
            )
            SELECT prompt_id, conversation_key, reply_id, ups, downs, ids
            FROM marked WHERE liked > 0 AND disliked > 0 AND ups <> downs
            ORDER BY prompt_id, conversation_key, reply_id
        """
        group: list = []
        current = None
        for row in self.rows(query, {"project": self.project.pk}):
            if row[:2] != current:
                self._pair_conversation(group)
                group, current = [], row[:2]
            group.append(row)
        self._pair_conversation(group)

    def _pair_conversation(self, replies: list) -> None:
        if not replies:
            return
        liked = sorted(
            (r for r in replies if r[3] > r[4]),
            key=lambda r: (-(r[3] + 1) / (r[3] + r[4] + 2), r[2]),
        )
        disliked = sorted(
            (r for r in replies if r[4] > r[3]),
            key=lambda r: ((r[3] + 1) / (r[3] + r[4] + 2), r[2]),
        )
        self.skipped["capped"] += len(liked) * len(disliked) - min(len(liked), THUMBS_SIDE) * min(
            len(disliked), THUMBS_SIDE
        )
        for up in liked[:THUMBS_SIDE]:
            for down in disliked[:THUMBS_SIDE]:
                confidence = _thumbs_confidence(up[3], up[4], down[3], down[4])
                self.propose(
                    Proposal(
                        up[0], up[2], down[2], Rule.THUMBS, confidence,
                        f"Thumbs: this reply got {up[3]} up / {up[4]} down, the other "
                        f"{down[3]} up / {down[4]} down in the same conversation; "
                        f"P(more liked) = {confidence:.3f}.",
                        sorted([*up[5], *down[5]]),
                    )
                )  # fmt: skip

    # A/B tests -------------------------------------------------------------------------

    def ab_tests(self) -> None:
        query = """
            SELECT s.id, s.prompt_id, s.reply_id, s.other_id, s.data::text
            FROM tasks_feedbacksignal s
            JOIN tasks_candidate r ON r.id = s.reply_id AND r.prompt_id = s.prompt_id
            JOIN tasks_candidate o ON o.id = s.other_id AND o.prompt_id = s.prompt_id
            WHERE s.project_id = %(project)s AND s.kind = 'ab_test'
            ORDER BY s.id
        """
        tests: dict[tuple[int, int, int], list] = {}
        for signal_id, prompt_id, a, b, data in self.rows(query, {"project": self.project.pk}):
            counts = ab_counts(json.loads(data)) if a != b else None
            if counts is None:
                self.skipped["invalid_ab"] += 1
                continue
            wins_a, seen_a, wins_b, seen_b = counts
            if a > b:
                a, b, wins_a, seen_a, wins_b, seen_b = b, a, wins_b, seen_b, wins_a, seen_a
            total = tests.setdefault((prompt_id, a, b), [0, 0, 0, 0, []])
            total[0] += wins_a
            total[1] += seen_a
            total[2] += wins_b
            total[3] += seen_b
            total[4].append(signal_id)
        threshold = self.settings["ab_confidence"]
        for (prompt_id, a, b), (wins_a, seen_a, wins_b, seen_b, ids) in tests.items():
            a_better = prob_greater(
                1 + wins_a, 1 + seen_a - wins_a, 1 + wins_b, 1 + seen_b - wins_b
            )
            if a_better >= threshold:
                chosen, rejected, p = (a, wins_a, seen_a), (b, wins_b, seen_b), a_better
            elif 1 - a_better >= threshold:
                chosen, rejected, p = (b, wins_b, seen_b), (a, wins_a, seen_a), 1 - a_better
            else:
                self.skipped["not_significant"] += 1
                continue
            tests_word = f"{len(ids)} tests" if len(ids) > 1 else "A/B test"
            self.propose(
                Proposal(
                    prompt_id, chosen[0], rejected[0], Rule.AB_TEST, p,
                    f"{tests_word}: the winner won {chosen[1]} of {chosen[2]}, the loser "
                    f"{rejected[1]} of {rejected[2]}; P(winner better) = {p:.4f} "
                    f"≥ {threshold:g}.",
                    ids,
                )
            )  # fmt: skip

    # grades ----------------------------------------------------------------------------

    def grades(self) -> None:
        query = """
            WITH per_output AS (
                SELECT s.prompt_id, s.reply_id, avg(s.score) AS mean,
                       count(DISTINCT COALESCE(NULLIF(s.user_hash, ''), s.id::text)) AS reviewers,
                       array_agg(s.id ORDER BY s.id) AS ids
                FROM tasks_feedbacksignal s
                JOIN tasks_candidate c ON c.id = s.reply_id AND c.prompt_id = s.prompt_id
                WHERE s.project_id = %(project)s AND s.kind = 'grade'
                  AND s.score BETWEEN 0 AND 1
                GROUP BY s.prompt_id, s.reply_id
            )
            SELECT prompt_id, reply_id, mean, reviewers, ids FROM (
                SELECT *, count(*) OVER (PARTITION BY prompt_id) AS outputs FROM per_output
            ) o WHERE outputs > 1 ORDER BY prompt_id, reply_id
        """
        group: list = []
        for row in self.rows(query, {"project": self.project.pk}):
            if group and group[0][0] != row[0]:
                self._pair_grades(group)
                group = []
            group.append(row)
        self._pair_grades(group)

    def _pair_grades(self, outputs: list) -> None:
        margin_needed = self.settings["grade_margin"]
        found = []
        for high in outputs:
            for low in outputs:
                margin = high[2] - low[2]
                if high is not low and margin > 0 and margin >= margin_needed - 1e-9:
                    found.append((margin, high, low))
        found.sort(key=lambda f: (-f[0], f[1][1], f[2][1]))
        self.skipped["capped"] += max(0, len(found) - GRADE_PAIRS)
        for margin, high, low in found[:GRADE_PAIRS]:
            confidence = grade_confidence(margin, high[3], low[3])
            self.propose(
                Proposal(
                    high[0], high[1], low[1], Rule.GRADE, confidence,
                    f"Grades: {high[2]:.2f} ({_reviewers(high[3])}) over {low[2]:.2f} "
                    f"({_reviewers(low[3])}); margin {margin:.2f} ≥ {margin_needed:g}.",
                    sorted([*high[4], *low[4]]),
                )
            )  # fmt: skip

    # style rules -----------------------------------------------------------------------

    def style_rules(self) -> None:
        """Generated candidates of a rules recipe (``tasks.feedback.rules``): the one that
        follows every rule over each that breaks one, per prompt, recipe and list of rules.
        Projects that never ran such a recipe cost one indexed look-up."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT EXISTS (SELECT 1 FROM tasks_generationjob WHERE project_id = %s "
                "AND variants @> %s::jsonb)",
                [self.project.pk, json.dumps([{"style_rules": {}}])],
            )
            if not cursor.fetchone()[0]:
                return
        query = """
            SELECT c.prompt_id, c.id, coalesce(c.parameters ->> 'recipe', ''),
                   (c.parameters -> 'style_rules')::text
            FROM tasks_candidate c
            JOIN tasks_prompt p ON p.id = c.prompt_id
            WHERE p.project_id = %(project)s AND c.source = 'generated'
              AND c.parameters ? 'style_rules'
            ORDER BY c.prompt_id, c.id
        """
        group: list = []
        for row in self.rows(query, {"project": self.project.pk}):
            if group and group[0][0] != row[0]:
                self._pair_style(group)
                group = []
            group.append(row)
        self._pair_style(group)

    def _pair_style(self, candidates: list) -> None:
        # (recipe, rules) -> the candidates that follow them all, and (id, n) that break n
        follows: dict[tuple, list[int]] = defaultdict(list)
        breaks: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for prompt_id, candidate_id, recipe, recorded in candidates:
            style = json.loads(recorded)
            rules = style.get("rules") if isinstance(style, dict) else None
            n = style.get("breaks") if isinstance(style, dict) else None
            if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
                continue
            key = (prompt_id, recipe, tuple(rules))
            if n is None:
                follows[key].append(candidate_id)
            elif isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= len(rules):
                breaks[key].append((candidate_id, n))
        for key, chosen_ids in follows.items():
            rules = key[2]
            for chosen in chosen_ids:
                for rejected, n in breaks.get(key, ()):
                    self.propose(
                        Proposal(
                            key[0], chosen, rejected, Rule.STYLE_RULE, STYLE_RULE_CONFIDENCE,
                            f"Style rule: follows all rules; the other breaks rule {n}: "
                            f"'{rules[n - 1]}'",
                            [],
                        )
                    )  # fmt: skip

    # contradictions and status ---------------------------------------------------------

    def settle(self, expert_pairs: list[tuple[int, int, str, str]]) -> None:
        """Drops proposals experts have already judged; marks contradictions; sets each
        remaining proposal's status."""
        judged = {(c, r, rule) for c, r, rule, _ in expert_pairs}
        for key in judged & self.proposals.keys():
            del self.proposals[key]
        # Which rules put one reply over another; words only for the few contradicted.
        says: dict[tuple[int, int], list[str]] = defaultdict(list)
        for p in self.proposals.values():
            says[(p.chosen_id, p.rejected_id)].append(p.rule)
        for chosen, rejected, rule, status in expert_pairs:
            label = Rule(rule).label.lower()
            if status == SignalPair.Status.CONFIRMED:
                says[(chosen, rejected)].append(f"experts who confirmed the {label} pair")
            elif status == SignalPair.Status.FLIPPED:
                says[(rejected, chosen)].append(f"experts who flipped the {label} pair")
        verify_below = self.settings["verify_below"]
        percent = self.settings["audit_sample_percent"]
        for p in self.proposals.values():
            against = says.get((p.rejected_id, p.chosen_id))
            if against:
                p.status = SignalPair.Status.CONTRADICTED
                p.reason = (
                    f"{p.reason} Contradicted: the other reply comes first by "
                    f"{'; by '.join(sorted({_words(side) for side in against}))}."
                )
            elif p.confidence < verify_below:
                p.status = SignalPair.Status.TO_VERIFY
            elif audit_sampled(p.chosen_id, p.rejected_id, p.rule, percent):
                p.status = SignalPair.Status.TO_VERIFY
                p.reason = f"{p.reason} Sampled for an expert audit."
            else:
                p.status = SignalPair.Status.ACCEPTED


def _words(side: str) -> str:
    """A rule's label (lower case), or an expert verdict already in words."""
    return Rule(side).label.lower() if side in Rule.values else side


def _reviewers(n: int) -> str:
    return "1 reviewer" if n == 1 else f"mean of {n} reviewers"


_thumbs_cache: dict[tuple[int, int, int, int], float] = {}


def _thumbs_confidence(ups_a: int, downs_a: int, ups_b: int, downs_b: int) -> float:
    key = (ups_a, downs_a, ups_b, downs_b)
    if key not in _thumbs_cache:
        if len(_thumbs_cache) > 100_000:
            _thumbs_cache.clear()
        _thumbs_cache[key] = prob_greater(1 + ups_a, 1 + downs_a, 1 + ups_b, 1 + downs_b)
    return _thumbs_cache[key]


def _count(value) -> int | None:
    """A count as an import may have stored it (int, integral float or digits), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value <= 10**12 else None


def ab_counts(data) -> tuple[int, int, int, int] | None:
    """(wins A, impressions A, wins B, impressions B) of an A/B signal's ``data``, or None
    when they are missing or impossible. See the module's docstring for the forms."""
    if not isinstance(data, dict):
        return None
    if "wins_a" in data or "wins_b" in data:
        wins_a, wins_b = _count(data.get("wins_a")), _count(data.get("wins_b"))
        if wins_a is None or wins_b is None:
            return None
        given = ("impressions_a" in data, "impressions_b" in data)
        if given == (False, False):
            seen_a = seen_b = wins_a + wins_b
        elif given == (True, True):
            seen_a, seen_b = _count(data["impressions_a"]), _count(data["impressions_b"])
            if seen_a is None or seen_b is None:
                return None
        else:
            return None
        if wins_a > seen_a or wins_b > seen_b or seen_a + seen_b == 0:
            return None
        return wins_a, seen_a, wins_b, seen_b
    winner = data.get("winner")
    if isinstance(winner, str) and winner.strip().lower() in ("a", "b"):
        return (1, 1, 0, 1) if winner.strip().lower() == "a" else (0, 1, 1, 1)
    return None


# --- writing -------------------------------------------------------------------------------


def _write_pairs(project: Project, proposals: list[Proposal]) -> dict:
    """Replaces the machine-made pairs of the project by ``proposals`` in four set-based
    statements (through a temporary table filled by COPY); expert-judged pairs and pairs
    with an item are never removed."""
    machine = [str(s) for s in MACHINE_STATUSES]
    params = {"project": project.pk, "org": project.organization_id, "machine": machine}
    match = "b.chosen_id = p.chosen_id AND b.rejected_id = p.rejected_id AND b.rule = p.rule"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS pg_temp.signal_pair_build")
        cursor.execute(
            "CREATE TEMP TABLE signal_pair_build (prompt_id bigint, chosen_id bigint, "
            "rejected_id bigint, rule varchar(16), confidence double precision, reason text, "
            "evidence jsonb, status varchar(16)) ON COMMIT DROP"
        )
        columns = sql.SQL(
            "COPY signal_pair_build (prompt_id, chosen_id, rejected_id, rule, confidence, "
            "reason, evidence, status) FROM STDIN"
        )
        with cursor.cursor.copy(columns) as copy:
            for p in proposals:
                copy.write_row(
                    (
                        p.prompt_id,
                        p.chosen_id,
                        p.rejected_id,
                        str(p.rule),
                        p.confidence,
                        p.reason,
                        "[" + ",".join(map(str, p.evidence)) + "]",
                        str(p.status),
                    )
                )
        # Indexed and analyzed: the statements below then join by index lookups whatever
        # the planner believes of tasks_signalpair (stale right after a first build, it
        # chose a nested loop over this table's every row: 250 s for 74,000 pairs).
        cursor.execute("CREATE INDEX ON signal_pair_build (chosen_id, rejected_id, rule)")
        cursor.execute("ANALYZE signal_pair_build")
        cursor.execute(
            f"DELETE FROM tasks_signalpair p WHERE p.project_id = %(project)s "  # noqa: S608
            f"AND p.status = ANY(%(machine)s) AND p.item_id IS NULL AND NOT EXISTS "
            f"(SELECT 1 FROM signal_pair_build b WHERE {match})",
            params,
        )
        removed = cursor.rowcount
        cursor.execute(
            f"UPDATE tasks_signalpair p SET prompt_id = b.prompt_id, "  # noqa: S608
            f"confidence = b.confidence, reason = b.reason, evidence = b.evidence, "
            f"status = b.status FROM signal_pair_build b WHERE p.project_id = %(project)s "
            f"AND {match} AND p.status = ANY(%(machine)s) AND "
            f"(p.prompt_id, p.confidence, p.reason, p.evidence, p.status) IS DISTINCT FROM "
            f"(b.prompt_id, b.confidence, b.reason, b.evidence, b.status)",
            params,
        )
        updated = cursor.rowcount
        cursor.execute(
            f"INSERT INTO tasks_signalpair (organization_id, project_id, prompt_id, chosen_id, "  # noqa: S608
            f"rejected_id, rule, confidence, reason, evidence, status, created_at) "
            f"SELECT %(org)s, %(project)s, b.prompt_id, b.chosen_id, b.rejected_id, b.rule, "
            f"b.confidence, b.reason, b.evidence, b.status, now() FROM signal_pair_build b "
            f"WHERE NOT EXISTS (SELECT 1 FROM tasks_signalpair p "
            f"WHERE p.project_id = %(project)s AND {match})",
            params,
        )
        created = cursor.rowcount
        cursor.execute("DROP TABLE signal_pair_build")
    return {"created": created, "updated": updated, "removed": removed}


KTO_SELECT = """
    SELECT id, prompt_id, reply_id, thumbs,
           (thumbs = 1 OR score >= %(high)s) IS TRUE AS up,
           (thumbs = -1 OR score <= %(low)s OR complaint) IS TRUE AS down,
           LEAST(1.0, GREATEST(
               CASE WHEN complaint THEN %(complaint)s END,
               CASE WHEN thumbs IN (1, -1) THEN %(thumbs)s END,
               CASE WHEN score >= %(high)s THEN %(rating)s + (1 - %(rating)s)
                        * (score - %(high)s) / GREATEST(1 - %(high)s, 1e-9) END,
               CASE WHEN score <= %(low)s THEN %(rating)s + (1 - %(rating)s)
                        * (%(low)s - score) / GREATEST(%(low)s, 1e-9) END
           )) AS confidence
    FROM tasks_feedbacksignal
    WHERE project_id = %(project)s AND kind = 'feedback' AND reply_id IS NOT NULL
      AND (thumbs IN (1, -1) OR score BETWEEN 0 AND 1 OR complaint)
"""


def _write_kto(project: Project, settings: dict) -> dict:
    """One KTO row per qualifying feedback signal, in SQL (see the module's docstring).

    The judged signals go to an indexed temporary table first: however stale the planner's
    statistics of the KTO table, its anti-join and upsert then stay index lookups."""
    params = {
        "project": project.pk,
        "org": project.organization_id,
        "high": settings["kto_desirable"],
        "low": settings["kto_undesirable"],
        "complaint": KTO_COMPLAINT_CONFIDENCE,
        "thumbs": KTO_THUMBS_CONFIDENCE,
        "rating": KTO_RATING_CONFIDENCE,
    }
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS pg_temp.kto_build")
        cursor.execute(
            "CREATE TEMP TABLE kto_build ON COMMIT DROP AS " + KTO_SELECT,  # noqa: S608
            params,
        )
        cursor.execute(
            "SELECT count(*) FILTER (WHERE up AND down), "
            "count(*) FILTER (WHERE NOT up AND NOT down) FROM kto_build"
        )
        conflicting, in_between = cursor.fetchone()
        cursor.execute("DELETE FROM kto_build WHERE up = down")
        cursor.execute("ALTER TABLE kto_build ADD PRIMARY KEY (id)")
        cursor.execute("ANALYZE kto_build")
        cursor.execute(
            "DELETE FROM tasks_ktoexample k WHERE k.project_id = %(project)s "
            "AND NOT EXISTS (SELECT 1 FROM kto_build j WHERE j.id = k.signal_id)",
            params,
        )
        cursor.execute(
            "INSERT INTO tasks_ktoexample AS k (organization_id, project_id, "
            "prompt_id, candidate_id, desirable, rule, confidence, signal_id, created_at) "
            "SELECT %(org)s, %(project)s, prompt_id, reply_id, up, "
            "CASE WHEN thumbs IN (1, -1) THEN 'thumbs' ELSE 'rating' END, confidence, id, "
            "now() FROM kto_build "
            "ON CONFLICT (project_id, signal_id) DO UPDATE SET prompt_id = EXCLUDED.prompt_id, "
            "candidate_id = EXCLUDED.candidate_id, desirable = EXCLUDED.desirable, "
            "rule = EXCLUDED.rule, confidence = EXCLUDED.confidence "
            "WHERE (k.prompt_id, k.candidate_id, k.desirable, k.rule, k.confidence) "
            "IS DISTINCT FROM (EXCLUDED.prompt_id, EXCLUDED.candidate_id, EXCLUDED.desirable, "
            "EXCLUDED.rule, EXCLUDED.confidence)",
            params,
        )
        cursor.execute("DROP TABLE kto_build")
    return {"kto_conflicting": conflicting, "kto_in_between": in_between}


# --- the service ---------------------------------------------------------------------------


def build_pairs(*, project: Project) -> dict:
    """Builds (or rebuilds) the project's signal pairs and KTO rows from its feedback
    signals, all or nothing; the rules are in the module's docstring.

    Returns the counts: ``pairs`` {rule: {status: n}} of every pair the project now has
    (expert-judged ones included), ``kto`` {"desirable": n, "undesirable": n}, ``skipped``
    (signals or tests that made nothing, by cause) and ``changes`` (pairs created, updated,
    removed by this run). Two builds of one project wait for each other (a row lock on
    the project)."""
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).values_list("pk").get()
        settings = pair_settings(project)
        builder = _Builder(project, settings)
        builder.rewrites()
        builder.regenerations()
        builder.thumbs()
        builder.ab_tests()
        builder.grades()
        builder.style_rules()
        expert_pairs = list(
            SignalPair.objects.filter(project=project, status__in=EXPERT_STATUSES).values_list(
                "chosen_id", "rejected_id", "rule", "status"
            )
        )
        builder.settle(expert_pairs)
        changes = _write_pairs(project, list(builder.proposals.values()))
        skipped = {**builder.skipped, **_write_kto(project, settings)}
        pairs: dict[str, dict[str, int]] = {}
        for row in (
            SignalPair.objects.filter(project=project)
            .values("rule", "status")
            .annotate(n=Count("id"))
            .order_by("rule", "status")
        ):
            pairs.setdefault(row["rule"], {})[row["status"]] = row["n"]
        kto = dict.fromkeys(("desirable", "undesirable"), 0)
        for row in (
            KTOExample.objects.filter(project=project)
            .values("desirable")
            .annotate(n=Count("id"))
            .order_by()
        ):
            kto["desirable" if row["desirable"] else "undesirable"] = row["n"]
    return {"pairs": pairs, "kto": kto, "skipped": skipped, "changes": changes}
