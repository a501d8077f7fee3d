"""Candidate generation: a local LLM drafts several responses per prompt, so experts
select and compare instead of writing.

A job runs one recipe (a list of variants) on one endpoint for a project's prompts:
- ``dispatch`` (Celery job ``run_generation``) works out which prompt and variant pairs
  still lack a candidate and sends them out in chunks of prompts (``generate_chunk``);
- a chunk runs its requests on a thread pool, each request in one of the endpoint's slots
  (tasks.llm.endpoint_slot), stores each candidate as it arrives, builds the prompt's items
  once its variants are settled, and moves the job's counters;
- the last chunk of a dispatch finishes the job.

Idempotent: a candidate is identified by (prompt, variant key), unique in the database for
generated candidates, and the variant key is a hash of the model and the exact parameters.
Re-running a job, a resumed job (``resume``), or a chunk message delivered twice asks only
for what is missing and never stores a second candidate. A request that fails after its
retries is recorded as a GenerationFailure with a message of ours.
"""

import hashlib
import json
import logging
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django_scopes import scopes_disabled

from tasks import llm
from tasks.audit import Action, record
from tasks.importers.rows import candidate_hash
from tasks.items import build_items
from tasks.lifecycle import finish, gave_up, heartbeat, send
from tasks.models import (
    Candidate,
    GenerationFailure,
    GenerationJob,
    GenerationRecipe,
    LLMEndpoint,
    Prompt,
)

BRIEF = (
    "You are a helpful assistant. Answer correctly and as briefly as the question allows: "
    "no preamble, no repetition."
)
THOROUGH = (
    "You are a helpful expert assistant. Give a thorough, well-structured answer: explain "
    "your reasoning, cover edge cases and caveats, and use examples where they help."
)
FLAWED = (
    "You are writing a deliberately flawed answer for a training dataset of rejected "
    "responses. Sound confident, but include a subtle factual error or skip an important "
    "step, and do not point out the flaw."
)
# The seed's recipe: brevity, thoroughness and a deliberately flawed answer, at the seed's
# temperatures (conservative to creative).
DEFAULT_RECIPE_NAME = "Brief / thorough / flawed"
logger = logging.getLogger(__name__)
DEFAULT_VARIANTS = [
    {"name": "brief-0.3", "system_prompt": BRIEF, "temperature": 0.3, "seed": 1},
    {"name": "thorough-0.7", "system_prompt": THOROUGH, "temperature": 0.7, "seed": 2},
    {"name": "thorough-1.0", "system_prompt": THOROUGH, "temperature": 1.0, "seed": 3},
    {"name": "flawed-0.7", "system_prompt": FLAWED, "temperature": 0.7, "seed": 4},
]
VARIANT_DEFAULTS = {"system_prompt": "", "top_p": 0.95, "max_tokens": 512}
VARIANT_KEYS = {"name", "system_prompt", "temperature", "top_p", "max_tokens", "seed"}
# Optional: a variant made by tasks.feedback.rules records the style rules it was asked to
# follow and the one it was asked to break ({"rules": [text, …], "breaks": n or None}); the
# candidate keeps it in its parameters, where the pair builder's style_rule reads it.
STYLE_RULES = "style_rules"
MAX_VARIANTS = 20


def validate_variants(variants) -> list[dict]:
    """A recipe's variants, complete and checked; ValidationError naming the problem."""
    if not isinstance(variants, list) or not variants:
        raise ValidationError("A recipe is a non-empty list of variants.")
    # A recipe made from the most style rules (tasks.feedback.rules.MAX_RULES) has one
    # variant more: the one that follows them all.
    limit = MAX_VARIANTS + all(isinstance(v, dict) and STYLE_RULES in v for v in variants)
    if len(variants) > limit:
        raise ValidationError(f"A recipe has at most {MAX_VARIANTS} variants.")
    clean, names = [], set()
    for number, variant in enumerate(variants, start=1):
        where = f"variant {number}"
        if not isinstance(variant, dict):
            raise ValidationError(f"{where}: an object with name, temperature, … is expected.")
        unknown = set(variant) - VARIANT_KEYS - {"key", STYLE_RULES}
        if unknown:
            raise ValidationError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}.")
        v = {**VARIANT_DEFAULTS, "seed": number, **variant}
        v.pop("key", None)
        name = v.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 60:
            raise ValidationError(f"{where}: a name of 1 to 60 characters is required.")
        if name in names:
            raise ValidationError(f"{where}: the name {name!r} is used twice.")
        names.add(name)
        if not isinstance(v["system_prompt"], str) or len(v["system_prompt"]) > 20_000:
            raise ValidationError(f"{where}: system_prompt must be text (20,000 chars at most).")
        for field, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
            value = v.get(field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValidationError(f"{where}: {field} must be a number.")
            if not low <= value <= high:
                raise ValidationError(f"{where}: {field} must be between {low} and {high}.")
        for field, low, high in (("max_tokens", 1, 32_768), ("seed", 0, 2**31 - 1)):
            value = v.get(field)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValidationError(f"{where}: {field} must be a whole number {low}..{high}.")
        checked = {k: v[k] for k in sorted(VARIANT_KEYS)}
        if STYLE_RULES in v:
            checked[STYLE_RULES] = _style_rules(where, v[STYLE_RULES])
        clean.append(checked)
    return clean


def _style_rules(where: str, value) -> dict:
    """A variant's ``style_rules``: {"rules": 1..20 texts, "breaks": None or 1..len}."""
    if not isinstance(value, dict) or set(value) != {"rules", "breaks"}:
        raise ValidationError(f'{where}: style_rules must be {{"rules": [...], "breaks": n}}.')
    rules, breaks = value["rules"], value["breaks"]
    if (
        not isinstance(rules, list)
        or not 1 <= len(rules) <= MAX_VARIANTS
        or not all(isinstance(r, str) and r.strip() and len(r) <= 500 for r in rules)
    ):
        raise ValidationError(f"{where}: style_rules.rules must be non-empty texts.")
    if breaks is not None and (
        isinstance(breaks, bool) or not isinstance(breaks, int) or not 1 <= breaks <= len(rules)
    ):
        raise ValidationError(f"{where}: style_rules.breaks must be a rule's number or null.")
    return {"rules": list(rules), "breaks": breaks}


def variant_key(model: str, variant: dict) -> str:
    """Names a variant by what produces its text: the model and the exact parameters."""
    what = {k: variant[k] for k in sorted(VARIANT_KEYS - {"name"})}
    if STYLE_RULES in variant:  # only then: the keys of every other variant stay as they were
        what[STYLE_RULES] = variant[STYLE_RULES]
    digest = hashlib.sha256(json.dumps([model, what], sort_keys=True).encode()).hexdigest()
    return f"gen:{digest[:32]}"


def recipes_for(organization) -> dict[str, list[dict]]:
    """The recipes an organization may run, by name: the built-in one and its own."""
    recipes = {DEFAULT_RECIPE_NAME: validate_variants(DEFAULT_VARIANTS)}
    for recipe in GenerationRecipe.objects.filter(organization=organization):
        if recipe.name == DEFAULT_RECIPE_NAME:
            continue  # the built-in name is reserved (the form refuses it)
        try:
            recipes[recipe.name] = validate_variants(recipe.variants)
        except ValidationError:
            logger.warning("recipe %s of organization %s is invalid", recipe.pk, organization)
    return recipes


def create_job(
    *,
    project,
    endpoint: LLMEndpoint,
    variants: list[dict],
    recipe_name: str,
    prompt_ids: list[int] | None = None,
    created_by=None,
) -> GenerationJob:
    """A queued job; ValidationError if the endpoint is not enabled for the project's
    organization or a prompt is not the project's. ``start`` sends it to the workers."""
    if not LLMEndpoint.for_organization(project.organization).filter(pk=endpoint.pk).exists():
        raise ValidationError({"endpoint": "This LLM endpoint is not enabled here."})
    variants = validate_variants(variants)
    for variant in variants:
        variant["key"] = variant_key(endpoint.model, variant)
    prompts = Prompt.objects.filter(project=project)
    if prompt_ids is not None:
        prompt_ids = sorted(set(prompt_ids))
        found = set(prompts.filter(pk__in=prompt_ids).values_list("pk", flat=True))
        missing = [pk for pk in prompt_ids if pk not in found]
        if missing:
            raise ValidationError({"prompts": f"Not prompts of this project: {missing[:10]}"})
        count = len(prompt_ids)
    else:
        count = prompts.count()
    if not count:
        raise ValidationError({"prompts": "The project has no prompts to generate for."})
    return GenerationJob.objects.create(
        organization=project.organization,
        project=project,
        endpoint=endpoint,
        model=endpoint.model,
        recipe_name=recipe_name,
        variants=variants,
        prompt_ids=prompt_ids,
        total=count * len(variants),
        created_by=created_by,
    )


def request_generation(
    *,
    project,
    endpoint_id: int,
    recipe: str | None = None,
    variants: list[dict] | None = None,
    prompt_ids: list[int] | None = None,
    created_by=None,
) -> GenerationJob:
    """Create and start a job from a request: the endpoint by id, and either a recipe by
    name (default: the built-in one) or inline ``variants`` (the job's recipe is then
    "(inline)"), both as the project's organization may use them.

    A bad request is a ValidationError whose error_dict names the field ("endpoint",
    "recipe", "variants" or "prompts"); invalid variants are reported under "variants".
    """
    organization = project.organization
    endpoint = LLMEndpoint.for_organization(organization).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise ValidationError({"endpoint": "No such LLM endpoint is enabled here."})
    if variants is not None and recipe is not None:
        raise ValidationError({"variants": "Give a recipe or variants, not both."})
    if variants is not None:
        recipe_name = "(inline)"
    else:
        recipe_name = DEFAULT_RECIPE_NAME if recipe is None else recipe
        recipes = recipes_for(organization)
        if recipe_name not in recipes:
            raise ValidationError({"recipe": f"No recipe named {recipe_name!r}."})
        variants = recipes[recipe_name]
    try:
        job = create_job(
            project=project,
            endpoint=endpoint,
            variants=variants,
            recipe_name=recipe_name,
            prompt_ids=prompt_ids,
            created_by=created_by,
        )
    except ValidationError as error:
        if hasattr(error, "error_dict"):
            raise
        raise ValidationError({"variants": error.messages}) from None
    start(job)
    return job


def start(job: GenerationJob) -> None:
    from tasks.jobs import run_generation  # tasks.jobs imports this module

    send(run_generation, job)


def _prompts(job: GenerationJob):
    prompts = Prompt.objects.filter(project_id=job.project_id)
    return prompts.filter(pk__in=job.prompt_ids) if job.prompt_ids is not None else prompts


def _settled(job: GenerationJob, prompt_ids) -> set[tuple[int, str]]:
    """(prompt, variant key) pairs that need no request: a candidate exists, or this job
    recorded a failure for them."""
    keys = [v["key"] for v in job.variants]
    have = set(
        Candidate.objects.filter(
            prompt_id__in=prompt_ids, source=Candidate.Source.GENERATED, source_key__in=keys
        ).values_list("prompt_id", "source_key")
    )
    have |= set(
        GenerationFailure.objects.filter(job=job, prompt_id__in=prompt_ids).values_list(
            "prompt_id", "variant_key"
        )
    )
    return have


def recount(job: GenerationJob) -> None:
    """Counters from the database, the truth after a worker died between a write and its
    count."""
    keys = [v["key"] for v in job.variants]
    prompt_ids = _prompts(job).values("pk")
    have = Candidate.objects.filter(
        prompt_id__in=prompt_ids, source=Candidate.Source.GENERATED, source_key__in=keys
    ).count()
    # A pair that failed once and got its candidate later counts as done only.
    failures = GenerationFailure.objects.filter(job=job).exclude(
        Exists(
            Candidate.objects.filter(
                prompt_id=OuterRef("prompt_id"),
                source=Candidate.Source.GENERATED,
                source_key=OuterRef("variant_key"),
            )
        )
    )
    GenerationJob.objects.filter(pk=job.pk).update(
        done=have + failures.filter(duplicate=True).count(),
        failed=failures.filter(duplicate=False).count(),
        heartbeat_at=timezone.now(),
    )


def dispatch(job_id: int) -> None:
    """Send the job's missing work to the workers in chunks (a new epoch), or finish it."""
    chunks = []
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
        if job.finished:
            return
        if job.status == GenerationJob.Status.CANCELLING:
            _finish(job)
            return
        if not job.endpoint.enabled:
            finish(job, GenerationJob.Status.FAILED, error="The LLM endpoint is disabled.")
            return
        recount(job)
        size = settings.CHOSEN_GENERATION_CHUNK_PROMPTS
        wanted = len(job.variants)
        prompt_ids = list(_prompts(job).order_by("pk").values_list("pk", flat=True))
        pending = []
        for start_at in range(0, len(prompt_ids), 1000):
            batch = prompt_ids[start_at : start_at + 1000]
            settled = _settled(job, batch)
            counts = {}
            for prompt_id, _ in settled:
                counts[prompt_id] = counts.get(prompt_id, 0) + 1
            pending += [pk for pk in batch if counts.get(pk, 0) < wanted]
        chunks = [pending[i : i + size] for i in range(0, len(pending), size)]
        job.total = len(prompt_ids) * wanted  # prompts may have come or gone since creation
        job.epoch += 1
        job.chunks_left, job.finished_chunks, job.started_chunks = len(chunks), [], []
        job.status = GenerationJob.Status.RUNNING
        job.started_at = job.started_at or timezone.now()
        job.heartbeat_at = timezone.now()
        job.sent_at = None  # until the chunks' messages are in the queue
        job.save(
            update_fields=[
                "total",
                "epoch",
                "chunks_left",
                "finished_chunks",
                "started_chunks",
                "status",
                "started_at",
                "heartbeat_at",
                "sent_at",
            ]
        )
        if not chunks:
            _finish(job)
            return
        epoch = job.epoch
        transaction.on_commit(lambda: _send_chunks(job, epoch, chunks), robust=True)


def _send_chunks(job: GenerationJob, epoch: int, chunks: list[list[int]]) -> None:
    """The chunk messages of a dispatch, then the time they were all in the queue: a job
    left without it (the queue went away meanwhile) is dispatched again by the sweeper."""
    from tasks.jobs import generate_chunk  # tasks.jobs imports this module

    for index, chunk in enumerate(chunks):
        generate_chunk.delay(job.organization_id, job.pk, epoch, chunk, index)
    GenerationJob.objects.filter(pk=job.pk, epoch=epoch).update(sent_at=timezone.now())


def run_chunk(job_id: int, epoch: int, prompt_ids: list[int], index: int = 0) -> None:
    """Generate what these prompts lack. Does nothing for a finished job or a chunk of an
    earlier dispatch; a chunk delivered twice is counted once."""
    if not _take_chunk(job_id, epoch, index):
        return
    job = GenerationJob.objects.select_related("endpoint", "project").get(pk=job_id)
    # A sign of life while the chunk runs (long requests included), so the sweeper does not
    # take a busy job for a dead one.
    with heartbeat(GenerationJob, job.pk, status__in=_ALIVE):
        try:
            if job.status == GenerationJob.Status.RUNNING and _endpoint_allowed(job):
                _generate(job, epoch, prompt_ids)
        except Exception:
            # Whatever went wrong, the chunk is over: the job must not wait for it forever.
            # Unsettled pairs show as "not generated" when the job finishes.
            logger.exception("generation job %s: chunk %s of epoch %s failed", job_id, index, epoch)
    _build_settled_items(job, prompt_ids)
    _chunk_done(job_id, epoch, index)


def _chunk_done(job_id: int, epoch: int, index: int) -> None:
    """Count the chunk once; the last one of the epoch finishes the job."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job_id)
        if job.epoch != epoch or job.finished or index in job.finished_chunks:
            return
        job.finished_chunks.append(index)
        job.chunks_left -= 1
        job.save(update_fields=["chunks_left", "finished_chunks"])
        if job.chunks_left <= 0:
            _finish(job)


_ALIVE = (GenerationJob.Status.RUNNING, GenerationJob.Status.CANCELLING)


def _take_chunk(job_id: int, epoch: int, index: int) -> bool:
    """Note that a worker took this chunk of this epoch (see GenerationJob.started_chunks);
    False for a finished job or a chunk of an earlier dispatch, which does nothing."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.epoch != epoch or job.finished:
            return False
        if index not in job.started_chunks:
            job.started_chunks.append(index)
            job.heartbeat_at = timezone.now()
            job.save(update_fields=["started_chunks", "heartbeat_at"])
    return True


def _endpoint_allowed(job: GenerationJob) -> bool:
    """The endpoint is still enabled for the job's organization (it may have changed)."""
    allowed = LLMEndpoint.for_organization(job.organization_id).filter(pk=job.endpoint_id)
    if allowed.exists():
        return True
    GenerationJob.objects.filter(pk=job.pk).update(
        error="The LLM endpoint was disabled or withdrawn from this organization."
    )
    return False


def _finish(job: GenerationJob) -> None:
    recount(job)
    job.refresh_from_db()
    missing = job.total - job.done - job.failed
    if job.status == GenerationJob.Status.CANCELLING:
        finish(job, GenerationJob.Status.CANCELLED, error=job.error)
    elif job.done == 0 and job.total:
        error = job.error or "No candidate was generated; see the failures for why."
        finish(job, GenerationJob.Status.FAILED, error=error)
    elif missing > 0:
        error = job.error or (
            f"{missing} of {job.total} candidates were not generated (the worker log says "
            "why); start the job again to ask for just those."
        )
        finish(job, GenerationJob.Status.FAILED, error=error)
    else:
        finish(job, GenerationJob.Status.SUCCEEDED, error=job.error)
        _build_rule_pairs(job)


def _build_rule_pairs(job: GenerationJob) -> None:
    """A style-rules recipe's candidates are drafted to become pairs (rule-following over
    rule-breaking, tasks.feedback.rules): once its job succeeded they are built and the
    doubtful ones queued for experts, as a pair-build job of its own (audited, visible in
    the admin; a failure there fails that job, not this one)."""
    if not any(STYLE_RULES in variant for variant in job.variants):
        return
    # tasks.imports reaches tasks.feedback, whose rules module imports this one
    from tasks.imports import start_pair_build

    start_pair_build(project=job.project, created_by=job.created_by)


def _messages(prompt: Prompt, variant: dict) -> list[dict]:
    system = [{"role": "system", "content": variant["system_prompt"]}]
    if variant["system_prompt"] == "":
        system = []
    turns = prompt.messages or [{"role": "user", "content": prompt.text}]
    # A conversation's own system turn gives way to the variant's.
    turns = [t for t in turns if not system or t.get("role") != "system"]
    return system + [{"role": t["role"], "content": t["content"]} for t in turns]


def _generate(job: GenerationJob, epoch: int, prompt_ids: list[int]) -> None:
    endpoint, project = job.endpoint, job.project
    prompts = {p.pk: p for p in Prompt.objects.filter(pk__in=prompt_ids)}  # deleted: skipped
    settled = _settled(job, prompt_ids)
    work = [
        (prompt, variant)
        for pk in prompt_ids
        if (prompt := prompts.get(pk)) is not None
        for variant in job.variants
        if (pk, variant["key"]) not in settled
    ]
    left = {pk: sum(1 for p, _ in work if p.pk == pk) for pk in prompts}
    stop = threading.Event()
    client = llm.client_for(endpoint)

    def request(prompt, variant):
        if stop.is_set():
            return None
        return llm.complete_with_retries(
            client, endpoint, job.model, _messages(prompt, variant), variant, cancelled=stop.is_set
        )

    # The pool keeps every slot of the endpoint busy; the slots themselves (not the pool)
    # bound what is in flight across workers.
    pool = ThreadPoolExecutor(max_workers=max(1, endpoint.max_concurrent_requests))
    try:
        running = {pool.submit(request, p, v): (p, v) for p, v in work}
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                prompt, variant = running.pop(future)
                if not future.cancelled():
                    _settle(job, prompt, variant, future)
                left[prompt.pk] -= 1
                if left[prompt.pk] == 0 and not stop.is_set():
                    _build_items(project, prompt)
            if not stop.is_set() and _should_stop(job, epoch):
                stop.set()
                for future in running:
                    future.cancel()
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _settle(job: GenerationJob, prompt: Prompt, variant: dict, future) -> None:
    """Store a finished request's candidate, or its failure. Anything unexpected (a reply
    the client could not make sense of, a prompt deleted meanwhile) is recorded with a
    message of ours, never the server's words."""
    try:
        completion = future.result()
        if completion is not None:
            _store(job, prompt, variant, completion)
    except llm.GenerationError as error:
        _record_failure(job, prompt, variant, str(error), error.attempts)
    except Exception:
        logger.exception("generation job %s: prompt %s, %s", job.pk, prompt.pk, variant["name"])
        try:
            _record_failure(job, prompt, variant, "Unexpected error (see the worker log).", 1)
        except Exception:
            logger.exception("generation job %s: could not record the failure", job.pk)


def _should_stop(job: GenerationJob, epoch: int) -> bool:
    """Cancelled, finished, or dispatched anew (a resume): this chunk asks for no more."""
    row = GenerationJob.objects.filter(pk=job.pk).values_list("status", "epoch").first()
    return row is None or row[0] != GenerationJob.Status.RUNNING or row[1] != epoch


def _store(job: GenerationJob, prompt: Prompt, variant: dict, completion) -> None:
    parameters = {
        "recipe": job.recipe_name,
        "variant": variant["name"],
        "system_prompt": variant["system_prompt"],
        "temperature": variant["temperature"],
        "top_p": variant["top_p"],
        "max_tokens": variant["max_tokens"],
        "seed": variant["seed"],
        "endpoint": job.endpoint.name,
        "generation_job": job.pk,
    }
    if STYLE_RULES in variant:
        parameters[STYLE_RULES] = variant[STYLE_RULES]
    try:
        with transaction.atomic():
            Candidate.objects.create(
                organization_id=job.organization_id,
                prompt=prompt,
                text=completion.text,
                source=Candidate.Source.GENERATED,
                source_key=variant["key"],
                model=completion.model,
                parameters=parameters,
                finish_reason=completion.finish_reason,
                content_hash=candidate_hash(completion.text),
            )
    except IntegrityError:
        # Either this variant's candidate is there already (a chunk delivered twice), or the
        # model repeated another candidate of this prompt word for word.
        if Candidate.objects.filter(
            prompt=prompt, source=Candidate.Source.GENERATED, source_key=variant["key"]
        ).exists():
            return
        _record_failure(
            job,
            prompt,
            variant,
            "The model repeated another candidate of this prompt word for word; it is not "
            "stored twice.",
            1,
            duplicate=True,
        )
        return
    _count(job, done=1)


def _record_failure(job, prompt, variant, message, attempts, *, duplicate=False) -> None:
    if not duplicate:
        message = f"{message} Gave up after {attempts} attempt{'s' if attempts != 1 else ''}."
    _, created = GenerationFailure.objects.get_or_create(
        job=job,
        prompt=prompt,
        variant_key=variant["key"],
        defaults={
            "variant_name": variant["name"],
            "message": message,
            "attempts": attempts,
            "duplicate": duplicate,
        },
    )
    if created:
        _count(job, **({"done": 1} if duplicate else {"failed": 1}))


def _count(job: GenerationJob, *, done: int = 0, failed: int = 0) -> None:
    GenerationJob.objects.filter(pk=job.pk).update(
        done=F("done") + done, failed=F("failed") + failed, heartbeat_at=timezone.now()
    )


def _build_items(project, prompt: Prompt) -> None:
    """Items for a prompt whose candidates are all in (as they arrive, not at the end).
    Idempotent; in one transaction with the prompt locked, so two chunks or jobs finishing
    the same prompt do not build its items twice."""
    try:
        with transaction.atomic():
            Prompt.objects.select_for_update().filter(pk=prompt.pk).first()
            ids = list(Candidate.objects.filter(prompt=prompt).values_list("pk", flat=True))
            build_items(project, {prompt.pk: ids})
    except IntegrityError:
        logger.warning("items of prompt %s were being built elsewhere", prompt.pk)


def _build_settled_items(job: GenerationJob, prompt_ids: list[int]) -> None:
    """At the end of a chunk: items for every prompt of it whose variants are all settled
    (also those settled by a chunk that died before building them)."""
    try:
        settled = _settled(job, prompt_ids)
        wanted = {v["key"] for v in job.variants}
        for prompt in Prompt.objects.filter(pk__in=prompt_ids):
            if all((prompt.pk, key) in settled for key in wanted):
                _build_items(job.project, prompt)
    except Exception:
        logger.exception("generation job %s: building items failed", job.pk)


def cancel(job: GenerationJob) -> GenerationJob:
    """Stop asking for more: a queued job is cancelled at once, a running one after the
    requests in flight."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().get(pk=job.pk)
        if job.status == GenerationJob.Status.QUEUED:
            job.status, job.finished_at = GenerationJob.Status.CANCELLED, timezone.now()
        elif job.status == GenerationJob.Status.RUNNING:
            job.status = GenerationJob.Status.CANCELLING
        job.save(update_fields=["status", "finished_at"])
    return job


def resume(job: GenerationJob) -> bool:
    """Dispatch an unfinished job again (its worker died, or it stalled): only the missing
    work is sent, and chunks of the earlier dispatch become no-ops. False if finished."""
    if job.finished:
        return False
    start(job)
    record(
        Action.GENERATION_RESUMED,
        organization=job.organization_id,
        obj=job,
        object_type="generation",
        data={"project": job.project_id},
    )
    return True


def resume_stalled(*, broker_forgot: bool = False) -> int:
    """Resume running jobs whose work was lost (beat's sweeper runs this,
    tasks.jobs.sweep_jobs): no sign of life for CHOSEN_JOB_STALE_SECONDS, and a chunk a
    worker took never finished (its worker died), or the chunks never all reached the
    queue, or they have waited CHOSEN_JOB_LOST_SECONDS; and every running job when the
    broker restarted without its data (``broker_forgot``: its chunk messages are gone).
    Chunks that merely wait in the queue behind other work are left alone: dispatching
    them again would put them behind it once more. A job lost CHOSEN_JOB_MAX_ATTEMPTS
    times fails, keeping what it generated. Queued jobs whose message was lost are
    lifecycle.sweep's. Returns how many jobs were resumed."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CHOSEN_JOB_STALE_SECONDS)
    lost = now - timedelta(seconds=settings.CHOSEN_JOB_LOST_SECONDS)
    resumed = 0
    with scopes_disabled():
        silent = GenerationJob.objects.filter(status__in=_ALIVE)
        if not broker_forgot:
            silent = silent.filter(Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True))
        for job in silent:
            taken = set(job.started_chunks) - set(job.finished_chunks)
            if not (broker_forgot or taken or job.sent_at is None or job.sent_at < lost):
                continue
            died = 0 if broker_forgot else 1  # a worker died under it (counted in attempts)
            # Taken by a conditional UPDATE: two sweeps resume it once.
            if not GenerationJob.objects.filter(
                pk=job.pk, epoch=job.epoch, heartbeat_at=job.heartbeat_at, status__in=_ALIVE
            ).update(heartbeat_at=now, attempts=F("attempts") + died):
                continue
            job.attempts += died
            if job.attempts >= settings.CHOSEN_JOB_MAX_ATTEMPTS:
                recount(job)
                job.refresh_from_db()
                error = (
                    f"{gave_up(job.attempts)} The {job.done} candidates it stored are kept; "
                    "start it again to ask for the rest."
                )
                finish(job, GenerationJob.Status.FAILED, error=error)
                continue
            logger.warning(
                "generation job %s resumed: %s",
                job.pk,
                "the job queue lost its messages" if broker_forgot else f"chunks {taken} lost",
            )
            start(job)
            resumed += 1
    return resumed


def progress_of(job: GenerationJob) -> dict:
    settled = job.done + job.failed
    return {
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "fraction": round(min(1.0, settled / job.total), 4) if job.total else 1.0,
    }
