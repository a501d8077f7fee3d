"""The AI judge: a local model pre-judges a project's pairs like one more annotator, and is
trusted only as far as its figures say.

A run (``JudgeRun``, Celery job ``annotation.jobs.run_judge``) asks the project's judge
endpoint about every pairwise item in both orders — "AB" shows the item's first candidate
(by id) as Response 1, "BA" swaps them — ``samples_per_order`` times each, with seeds 1..k.
Each reply is parsed strictly (its last line must read "Verdict: 1", "Verdict: 2" or
"Verdict: tie"; anything else is counted as unparsed, never guessed) and stored as a
``JudgeVerdict`` in candidate ids, as it arrives: verdicts commit one by one, unique per
(run, item, order, sample), so a run taken over after its worker died (beat's sweeper
queues it again) or started again after a failure asks only for what is missing.

Why the run does not go through ``tasks.lifecycle.run_job``: run_job holds one transaction
around the whole work, so nothing asked would survive a dead worker. The run uses the same
pieces instead — ``claim`` (one conditional UPDATE), ``heartbeat`` while it asks, and a
final transaction that aggregates, routes and finishes only while this worker still holds
the claim.

Aggregation (``JudgeDecision``): wins of each candidate over all 2k verdicts, the decision
is the candidate with more wins (a tie when equal; "unparsed" when nothing was read),
margin = |wins 1 - wins 2| / 2k (an unparsed verdict counts as no confidence), flipped =
the majority of the AB verdicts and of the BA verdicts differ (the decision depends on
where a response is shown), agrees_with_gold for gold items.

Routing (``route``), when the project's config turns it on: an item goes to people (keeps
its overlap target) when the judge flips, expresses no preference, its margin is below the
threshold, it disagrees with gold, or the item is drawn for the audit share (a stable draw
per project and item, so the audit set does not move between runs); every other non-gold
item gets ``target_annotations = 0``, which the allocator reads as "wants no more
annotations" (annotation/allocator.py serves ``assignment_count < target_annotations``).
Gold items are never lowered: the allocator serves them as attention checks whatever
their target. Turning routing off, or a run that routes an item to people, restores the
project's target for it (``tasks.items.target_annotations``).

The judge's own figures (``run_figures``): flip rate, length bias, gold accuracy, unparsed
share. Its agreement with the human majority is computed in qc (qc/judge.py): this module
may not import qc.
"""

import hashlib
import logging
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, F

from annotation.models import JudgeConfig, JudgeDecision, JudgeRun, JudgeVerdict
from tasks import llm
from tasks.audit import Action, record
from tasks.items import target_annotations
from tasks.lifecycle import claim, finish, gave_up, heartbeat, send
from tasks.models import Candidate, Item, JobStatus, LLMEndpoint, Project

logger = logging.getLogger(__name__)

# What a lead sets (the form and the API show these, in this order).
SETTINGS = [
    "endpoint",
    "prompt_template",
    "samples_per_order",
    "temperature",
    "max_tokens",
    "routing",
    "margin_threshold",
    "audit_percent",
    "include_in_exports",
]
PLACEHOLDERS = ("guidelines", "rubric", "prompt", "response_1", "response_2")
REQUIRED_PLACEHOLDERS = ("prompt", "response_1", "response_2")
RAW_LIMIT = 4000
RATIONALE_LIMIT = 2000
# The last non-empty line of a reply, nothing else: "Verdict: 1" (markdown bold and a final
# full stop tolerated, as small models add them).
VERDICT_RE = re.compile(r"^\**\s*verdict\s*\**\s*:\s*\**\s*(1|2|tie)\s*\**\s*\.?$", re.IGNORECASE)


class JudgeFailed(Exception):
    """The run cannot go on for a reason its lead can act on (the endpoint is down or was
    withdrawn): the run fails with this message."""


class _Lost(Exception):
    """The run was taken from this worker (see tasks.lifecycle): it writes nothing more."""


# --- configuration ---------------------------------------------------------------------------


def usable_endpoints(organization):
    return LLMEndpoint.for_organization(organization)


def check_template(template: str) -> str:
    """The template, or ValidationError: it must name {prompt}, {response_1} and
    {response_2}; other {names} are left as they are (it is text for a model, not code)."""
    if not isinstance(template, str) or not template.strip():
        raise ValidationError({"prompt_template": "The judge needs a prompt template."})
    if len(template) > 20_000:
        raise ValidationError({"prompt_template": "The template is longer than 20,000 chars."})
    missing = [name for name in REQUIRED_PLACEHOLDERS if "{" + name + "}" not in template]
    if missing:
        names = ", ".join("{" + name + "}" for name in missing)
        raise ValidationError({"prompt_template": f"The template must contain {names}."})
    return template


@transaction.atomic
def configure(*, project: Project, endpoint_id: int, **fields) -> JudgeConfig:
    """Create or change the project's judge. ``endpoint_id`` must name an endpoint the
    organization may use; ``fields`` are JudgeConfig's other settings. The routing follows
    at once (``route``): turned off, lowered targets are restored. ValidationError names
    the field."""
    endpoint = usable_endpoints(project.organization).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise ValidationError({"endpoint": "No such LLM endpoint is enabled here."})
    config = JudgeConfig.objects.filter(project=project).first() or JudgeConfig(
        organization=project.organization, project=project
    )
    config.endpoint = endpoint
    for name, value in fields.items():
        setattr(config, name, value)
    config.prompt_template = check_template(config.prompt_template)
    config.full_clean()
    config.save()
    record(
        Action.JUDGE_CONFIGURED,
        organization=project.organization_id,
        obj=config,
        object_type="judge",
        data={
            "project": project.pk,
            "endpoint": endpoint.name,
            **{name: getattr(config, name) for name in AUDITED_SETTINGS},
        },
    )
    route(project)
    return config


# What the trail keeps of a judge's set-up besides the endpoint's name (the template too:
# it decides verdicts).
AUDITED_SETTINGS = tuple(name for name in SETTINGS if name != "endpoint")


def config_of(project: Project) -> JudgeConfig | None:
    return JudgeConfig.objects.filter(project=project).select_related("endpoint").first()


# --- runs ------------------------------------------------------------------------------------


def pair_items(project: Project):
    """The project's items of exactly two candidates: what a judge compares."""
    return (
        Item.objects.filter(project=project)
        .annotate(slot_count=Count("slots"))
        .filter(slot_count=2)
        .order_by("pk")
    )


@transaction.atomic
def start_run(*, project: Project, created_by=None) -> JudgeRun:
    """A queued run with the project's judge as configured now, sent to the workers.
    ValidationError when there is no judge, its endpoint is no longer usable, or the
    project has no pairs."""
    config = config_of(project)
    if config is None:
        raise ValidationError({"judge": "Configure the judge first."})
    if not usable_endpoints(project.organization).filter(pk=config.endpoint_id).exists():
        raise ValidationError({"endpoint": "The judge's LLM endpoint is not enabled here."})
    items = pair_items(project).count()
    if not items:
        raise ValidationError({"judge": "The project has no pairs to judge."})
    snapshot = {
        "prompt_template": config.prompt_template,
        "samples_per_order": config.samples_per_order,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }
    run = JudgeRun.objects.create(
        organization=project.organization,
        project=project,
        endpoint=config.endpoint,
        model=config.endpoint.model,
        settings=snapshot,
        items=items,
        total=items * 2 * config.samples_per_order,
        created_by=created_by,
    )
    _send(run)
    return run


def resume_run(run: JudgeRun) -> bool:
    """Queue a failed run again: it asks only for the verdicts it lacks. False when the
    run did not fail."""
    again = JudgeRun.objects.filter(pk=run.pk, status=JobStatus.FAILED).update(
        status=JobStatus.QUEUED, error="", finished_at=None, sent_at=None, attempts=0
    )
    if again:
        _send(run)
    return bool(again)


def _send(run: JudgeRun) -> None:
    from annotation.jobs import run_judge  # annotation.jobs imports this module

    send(run_judge, run)


def run(run_id: int) -> JudgeRun:
    """The Celery job's body: claim the run, ask for its missing verdicts (each committed
    as it arrives), then aggregate, route and finish in one transaction while the claim
    holds. A run that is finished, or held by a live worker, is returned untouched."""
    runs = JudgeRun.objects.select_related("project", "endpoint")
    attempt = claim(runs, run_id)
    job = runs.get(pk=run_id)
    if attempt is None:
        return job
    if attempt > settings.CHOSEN_JOB_MAX_ATTEMPTS:
        _end(job, attempt, JobStatus.FAILED, error=gave_up(attempt - 1))
        return job
    with heartbeat(JudgeRun, job.pk, attempts=attempt, status=JobStatus.RUNNING):
        try:
            ask_missing(job)
            with transaction.atomic():
                if not _held(job, attempt):
                    raise _Lost
                aggregate(job)
                job.figures = run_figures(job)
                _recount(job)
                job.refresh_from_db(fields=["done", "unparsed"])
                finish(job, JobStatus.SUCCEEDED, fields=["figures"])
                route(job.project)
        except _Lost:
            logger.warning("judge run %s was taken over by another worker", job.pk)
        except JudgeFailed as failure:
            _end(job, attempt, JobStatus.FAILED, error=str(failure))
        except Exception as error:
            logger.exception("judge run %s failed", job.pk)
            reason = job.reason_for(error, "The judge could not finish")
            _end(job, attempt, JobStatus.FAILED, error=reason)
    job.refresh_from_db()
    return job


def _held(job: JudgeRun, attempt: int) -> bool:
    """Lock the run's row if claim ``attempt`` still holds it (inside a transaction)."""
    held = JudgeRun.objects.select_for_update().filter(
        pk=job.pk, attempts=attempt, status=JobStatus.RUNNING
    )
    return bool(list(held.values_list("pk", flat=True)))


def _end(job: JudgeRun, attempt: int, status: str, *, error: str) -> None:
    with transaction.atomic():
        if _held(job, attempt):
            _recount(job)
            finish(job, status, error=error)


def _recount(job: JudgeRun) -> None:
    verdicts = JudgeVerdict.objects.filter(run=job)
    JudgeRun.objects.filter(pk=job.pk).update(
        done=verdicts.count(),
        unparsed=verdicts.filter(outcome=JudgeVerdict.Outcome.UNPARSED).count(),
    )


# --- asking ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    item: Item
    first: object  # the Candidate with the lower id
    second: object


def _pairs(job: JudgeRun) -> list[Pair]:
    items = list(
        pair_items(job.project).select_related("prompt").prefetch_related("slots__candidate")
    )
    pairs = []
    for item in items:
        first, second = sorted((slot.candidate for slot in item.slots.all()), key=lambda c: c.pk)
        pairs.append(Pair(item, first, second))
    return pairs


def rubric_text(project: Project) -> str:
    lines = []
    for question in project.rubric:
        scale = question.get("scale", {})
        criterion = question.get("criterion") or question.get("description") or ""
        lines.append(
            f"- {question['name']}: {criterion} (scored {scale.get('min', 1)} to "
            f"{scale.get('max', 5)})"
        )
    return "\n".join(lines) or "(none)"


def prompt_text(prompt) -> str:
    """The prompt as the judge reads it: a conversation as "role: content" turns."""
    if prompt.messages:
        return "\n\n".join(
            f"{t.get('role', 'user')}: {t.get('content', '')}" for t in prompt.messages
        )
    return prompt.text


def render_prompt(template: str, project: Project, prompt, response_1: str, response_2: str):
    """The template with its placeholders filled in, one pass, nothing escaped (it goes to
    a model) and nothing evaluated: not str.format, whose fields can reach attributes."""
    values = {
        "guidelines": project.guidelines or "(none)",
        "rubric": rubric_text(project),
        "prompt": prompt_text(prompt),
        "response_1": response_1,
        "response_2": response_2,
    }
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in PLACEHOLDERS))
    return pattern.sub(lambda match: values[match.group(0)[1:-1]], template)


def parse_reply(text: str) -> tuple[str | None, str]:
    """("1" | "2" | "tie", rationale) from a reply whose last non-empty line is the verdict;
    (None, the text) when it is not."""
    lines = [line.strip() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return None, ""
    match = VERDICT_RE.match(lines[-1])
    if match is None:
        return None, text.strip()[:RATIONALE_LIMIT]
    return match.group(1).lower(), "\n".join(lines[:-1])[:RATIONALE_LIMIT]


def _work(job: JudgeRun, pairs: list[Pair]) -> list[tuple[Pair, str, int]]:
    have = set(JudgeVerdict.objects.filter(run=job).values_list("item_id", "order", "sample"))
    k = job.settings["samples_per_order"]
    return [
        (pair, order, sample)
        for pair in pairs
        for order in (JudgeVerdict.Order.AB, JudgeVerdict.Order.BA)
        for sample in range(1, k + 1)
        if (pair.item.pk, order, sample) not in have
    ]


def ask_missing(job: JudgeRun) -> None:
    """Ask the endpoint for every verdict the run lacks and store each as it arrives. The
    first request that fails after its retries stops the run (JudgeFailed, with our own
    words: a server's body is never repeated)."""
    endpoint = job.endpoint
    if not usable_endpoints(job.organization_id).filter(pk=endpoint.pk).exists():
        raise JudgeFailed("The judge's LLM endpoint was disabled or withdrawn from here.")
    pairs = _pairs(job)
    JudgeRun.objects.filter(pk=job.pk).update(
        items=len(pairs), total=len(pairs) * 2 * job.settings["samples_per_order"]
    )
    work = _work(job, pairs)
    client = llm.client_for(endpoint)
    stop = threading.Event()

    def ask(pair: Pair, order: str, sample: int):
        if stop.is_set():
            return None
        one, two = (pair.first, pair.second) if order == "AB" else (pair.second, pair.first)
        text = render_prompt(
            job.settings["prompt_template"], job.project, pair.item.prompt, one.text, two.text
        )
        variant = {
            "temperature": job.settings["temperature"],
            "top_p": 1.0,
            "max_tokens": job.settings["max_tokens"],
            "seed": sample,
        }
        messages = [{"role": "user", "content": text}]
        return llm.complete_with_retries(
            client, endpoint, job.model, messages, variant, cancelled=stop.is_set
        )

    failure = None
    # Requests run on a pool as wide as the endpoint's slots; the slots themselves bound
    # what is in flight across workers. Verdicts are stored by this thread.
    pool = ThreadPoolExecutor(max_workers=max(1, endpoint.max_concurrent_requests))
    try:
        running = {pool.submit(ask, *piece): piece for piece in work}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                pair, order, sample = running.pop(future)
                try:
                    completion = future.result()
                except llm.GenerationError as error:
                    failure = failure or error
                    stop.set()
                    continue
                if completion is not None:
                    _store(job, pair, order, sample, completion.text)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if failure is not None:
        _recount(job)
        job.refresh_from_db(fields=["done", "total"])
        raise JudgeFailed(
            f"The judge's endpoint failed: {failure} {job.done} of {job.total} verdicts are "
            "stored; run it again to ask for the rest."
        )


def _store(job: JudgeRun, pair: Pair, order: str, sample: int, text: str) -> None:
    said, rationale = parse_reply(text)
    one, two = (pair.first, pair.second) if order == "AB" else (pair.second, pair.first)
    chosen = rejected = None
    if said == "1":
        chosen, rejected = one, two
    elif said == "2":
        chosen, rejected = two, one
    outcome = {
        None: JudgeVerdict.Outcome.UNPARSED,
        "tie": JudgeVerdict.Outcome.TIE,
    }.get(said, JudgeVerdict.Outcome.PREFERRED)
    try:
        with transaction.atomic():
            JudgeVerdict.objects.create(
                organization_id=job.organization_id,
                run=job,
                item=pair.item,
                order=order,
                sample=sample,
                outcome=outcome,
                chosen=chosen,
                rejected=rejected,
                rationale=rationale,
                raw=text[:RAW_LIMIT],
            )
    except IntegrityError:
        return  # asked twice (two workers): the first answer stays, counted once
    unparsed = int(outcome == JudgeVerdict.Outcome.UNPARSED)
    JudgeRun.objects.filter(pk=job.pk).update(done=F("done") + 1, unparsed=F("unparsed") + unparsed)


# --- aggregating, figures, routing --------------------------------------------------------------


def _majority(first: int, second: int, ties: int) -> str | None:
    """ "first" / "second" / "tie" from counts; None when nothing was read."""
    if first > second:
        return "first"
    if second > first:
        return "second"
    return "tie" if first or ties else None


def aggregate(job: JudgeRun) -> None:
    """One JudgeDecision per item from the run's verdicts (replacing any earlier ones of
    this run)."""
    pairs = {pair.item.pk: pair for pair in _pairs(job)}
    verdicts = defaultdict(list)
    for verdict in JudgeVerdict.objects.filter(run=job):
        verdicts[verdict.item_id].append(verdict)
    asked = 2 * job.settings["samples_per_order"]
    decisions = []
    for item_id, pair in pairs.items():
        counts = {order: Counter() for order in ("AB", "BA")}
        for verdict in verdicts.get(item_id, []):
            if verdict.outcome == JudgeVerdict.Outcome.PREFERRED:
                side = "first" if verdict.chosen_id == pair.first.pk else "second"
            else:
                side = verdict.outcome  # tie / unparsed
            counts[verdict.order][side] += 1
        total = counts["AB"] + counts["BA"]
        decided = _majority(total["first"], total["second"], total["tie"])
        by_order = [_majority(c["first"], c["second"], c["tie"]) for c in counts.values()]
        chosen = rejected = None
        if decided in ("first", "second"):
            chosen, rejected = (
                (pair.first, pair.second) if decided == "first" else (pair.second, pair.first)
            )
        gold = None
        if pair.item.gold and pair.item.gold_outcome:
            if pair.item.gold_outcome == "tie":
                gold = decided == "tie"
            elif pair.item.gold_chosen_id:
                gold = chosen is not None and chosen.pk == pair.item.gold_chosen_id
        decisions.append(
            JudgeDecision(
                organization_id=job.organization_id,
                run=job,
                item=pair.item,
                outcome=(
                    JudgeVerdict.Outcome.UNPARSED
                    if decided is None
                    else JudgeVerdict.Outcome.TIE
                    if decided == "tie"
                    else JudgeVerdict.Outcome.PREFERRED
                ),
                chosen=chosen,
                rejected=rejected,
                wins_first=total["first"],
                wins_second=total["second"],
                ties=total["tie"],
                unparsed=total["unparsed"],
                margin=round(abs(total["first"] - total["second"]) / asked, 4),
                flipped=None not in by_order and by_order[0] != by_order[1],
                agrees_with_gold=gold,
            )
        )
    JudgeDecision.objects.filter(run=job).delete()
    JudgeDecision.objects.bulk_create(decisions)


def _longer(verdict: JudgeVerdict, lengths: dict[int, int]) -> bool | None:
    """Whether a decisive verdict chose the longer response (None for equal lengths)."""
    chosen, rejected = lengths[verdict.chosen_id], lengths[verdict.rejected_id]
    return None if chosen == rejected else chosen > rejected


def run_figures(job: JudgeRun) -> dict:
    """The judge's own figures for a run:

    - ``flip_rate``: share of judged items (some verdict read in each order) whose
      decision in the AB order differs from the BA order (position bias; 0 is ideal);
    - ``length_bias``: share of decisive verdicts that chose the longer response (by
      characters; verdicts between equally long responses left out), minus 0.5: 0 is no
      preference for length, +0.5 always the longer, -0.5 always the shorter (the simple
      share MT-Bench's verbosity check uses, not a regression);
    - ``gold_accuracy``: share of gold items whose decision is the gold answer;
    - ``unparsed_share``: share of verdicts with no readable verdict line."""
    decisions = list(JudgeDecision.objects.filter(run=job))
    verdicts = list(
        JudgeVerdict.objects.filter(run=job, outcome=JudgeVerdict.Outcome.PREFERRED).only(
            "chosen_id", "rejected_id"
        )
    )
    both = {item_id for item_id, orders in _orders_read(job).items() if {"AB", "BA"} <= orders}
    judged = [d for d in decisions if d.item_id in both]
    lengths = _lengths(job)
    longer = [side for v in verdicts if (side := _longer(v, lengths)) is not None]
    gold = [d for d in decisions if d.agrees_with_gold is not None]
    total = JudgeVerdict.objects.filter(run=job).count()
    unparsed = JudgeVerdict.objects.filter(run=job, outcome=JudgeVerdict.Outcome.UNPARSED)

    def share(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    return {
        "items": len(decisions),
        "verdicts": total,
        "unparsed_share": share(unparsed.count(), total),
        "flip_rate": share(sum(d.flipped for d in judged), len(judged)),
        "flip_items": len(judged),
        "length_bias": None if not longer else round(sum(longer) / len(longer) - 0.5, 4),
        "length_verdicts": len(longer),
        "gold_items": len(gold),
        "gold_accuracy": share(sum(d.agrees_with_gold for d in gold), len(gold)),
    }


def _orders_read(job: JudgeRun) -> dict[int, set[str]]:
    read = defaultdict(set)
    verdicts = JudgeVerdict.objects.filter(run=job).exclude(outcome=JudgeVerdict.Outcome.UNPARSED)
    for item_id, order in verdicts.values_list("item_id", "order"):
        read[item_id].add(order)
    return read


def _lengths(job: JudgeRun) -> dict[int, int]:
    ids = set(
        JudgeVerdict.objects.filter(run=job, outcome=JudgeVerdict.Outcome.PREFERRED).values_list(
            "chosen_id", "rejected_id"
        )
    )
    flat = {pk for pair in ids for pk in pair}
    return {c.pk: len(c.text) for c in Candidate.objects.filter(pk__in=flat).only("text")}


def latest_run(project: Project) -> JudgeRun | None:
    """The project's newest succeeded run: the one whose decisions route and are shown."""
    return (
        JudgeRun.objects.filter(project=project, status=JobStatus.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )


def audited(project_id: int, item_id: int, percent: int) -> bool:
    """The stable audit draw: an item is in the audit share of ``percent``% by a hash of
    the project and the item (the same items in every run)."""
    digest = hashlib.sha256(f"judge-audit:{project_id}:{item_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 10_000 < percent * 100


def reasons_for(decision: JudgeDecision, item: Item, config: JudgeConfig) -> list[str]:
    """Why an item goes to people (empty: the judge decides it)."""
    reasons = []
    if decision.outcome != JudgeVerdict.Outcome.PREFERRED:
        reasons.append("no preference")
    if decision.flipped:
        reasons.append("flips with order")
    if decision.margin < config.margin_threshold:
        reasons.append("low margin")
    if decision.agrees_with_gold is False:
        reasons.append("disagrees with gold")
    if not reasons and item.gold:
        reasons.append("gold check")  # served to everyone as an attention check anyway
    if not reasons and audited(item.project_id, item.pk, config.audit_percent):
        reasons.append("audit sample")
    return reasons


@transaction.atomic
def route(project: Project) -> int:
    """Mark each decision of the newest run as routed to people or judge-decided, and,
    with routing on, set the items' targets: judge-decided non-gold items 0, every other
    item the judge lowered before back to the project's target. With routing off (or no
    judge) every lowered item is restored. Returns how many items are judge-decided."""
    config = config_of(project)
    job = latest_run(project)
    decided: set[int] = set()
    if config is not None and job is not None:
        decisions = list(JudgeDecision.objects.filter(run=job).select_related("item"))
        for decision in decisions:
            reasons = reasons_for(decision, decision.item, config)
            decision.routed_to_humans = bool(reasons)
            decision.route_reason = ", ".join(reasons)
            if not reasons and not decision.item.gold:
                decided.add(decision.item_id)
        JudgeDecision.objects.bulk_update(decisions, ["routed_to_humans", "route_reason"])
    if config is None or not config.routing:
        decided = set()
    Item.objects.filter(pk__in=decided).exclude(target_annotations=0).update(target_annotations=0)
    # Items this judge lowered (any run decided them) that are no longer judge-decided.
    lowered = (
        Item.objects.filter(project=project, target_annotations=0, judge_decisions__isnull=False)
        .exclude(pk__in=decided)
        .distinct()
    )
    restored = []
    for item in lowered:
        item.target_annotations = target_annotations(project, item.candidate_key)
        restored.append(item)
    Item.objects.bulk_update(restored, ["target_annotations"])
    return len(decided)


# --- for exports -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgePair:
    """A pair the judge decided and routing kept from people."""

    item: Item
    chosen_id: int
    rejected_id: int
    margin: float
    run: JudgeRun


def judge_decisions_for_export(project: Project):
    """The judge-decided items of the project's newest run (routed away from people, a
    preference, not a gold item), as a JudgeDecision queryset that exports order their own
    way; empty unless the lead turned ``include_in_exports`` on and routing is on: a pair is
    "judge-decided" only where routing let the judge decide."""
    config = config_of(project)
    job = latest_run(project)
    if config is None or job is None or not (config.include_in_exports and config.routing):
        return JudgeDecision.objects.none()
    return JudgeDecision.objects.filter(
        run=job,
        routed_to_humans=False,
        outcome=JudgeVerdict.Outcome.PREFERRED,
        item__gold=False,
    )


def judge_decided_pairs(project: Project) -> Iterator[JudgePair]:
    """``judge_decisions_for_export`` as pairs, by item. The exporter marks them as the
    judge's (source ``judge``)."""
    decisions = (
        judge_decisions_for_export(project)
        .select_related("item__prompt", "run")
        .order_by("item_id")
    )
    for decision in decisions.iterator(chunk_size=500):
        yield JudgePair(
            item=decision.item,
            chosen_id=decision.chosen_id,
            rejected_id=decision.rejected_id,
            margin=decision.margin,
            run=decision.run,
        )


@dataclass(frozen=True)
class DecisionRow:
    decision: JudgeDecision
    rationale: str


def decision_rows(job: JudgeRun, limit: int = 200) -> list[DecisionRow]:
    """The run's decisions for its page, those routed to people first, each with the
    rationale of its first readable verdict (model text: the template escapes it)."""
    decisions = list(
        JudgeDecision.objects.filter(run=job)
        .select_related("item__prompt", "chosen")
        .order_by("-routed_to_humans", "item_id")[:limit]
    )
    rationales = {}
    verdicts = JudgeVerdict.objects.filter(
        run=job, item_id__in=[d.item_id for d in decisions]
    ).exclude(outcome=JudgeVerdict.Outcome.UNPARSED)
    for item_id, rationale in verdicts.order_by("item_id", "order", "sample").values_list(
        "item_id", "rationale"
    ):
        rationales.setdefault(item_id, rationale)
    return [DecisionRow(d, rationales.get(d.item_id, "")) for d in decisions]


def progress_of(job: JudgeRun) -> dict:
    return {
        "total": job.total,
        "done": job.done,
        "failed": 0,  # a request that fails stops the run; unparsed replies are answers
        "unparsed": job.unparsed,
        "fraction": round(min(1.0, job.done / job.total), 4) if job.total else 1.0,
    }
