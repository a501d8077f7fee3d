import hashlib
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import DatabaseError, models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_scopes import ScopedManager


class Organization(models.Model):
    """The tenant. Every tenant-owned row carries a foreign key to one."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    require_mfa = models.BooleanField(
        default=False,
        help_text="Members must set up two-factor authentication before they can work here.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    LEAD = "lead", "Project lead"
    ANNOTATOR = "annotator", "Annotator"


# Roles that run projects: they use the admin, create API tokens and see every project.
MANAGING_ROLES = frozenset({Role.ADMIN, Role.LEAD})


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["organization", "user__email"]
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user.email} ({self.get_role_display()}) in {self.organization}"

    @property
    def manages(self) -> bool:
        return self.role in MANAGING_ROLES


class ProjectQuerySet(models.QuerySet):
    def for_member(self, membership: Membership | None) -> "ProjectQuerySet":
        """Projects this member may see: all of them for leads and admins; for annotators
        the ones open for work (active or paused) that admit every annotator or name them;
        none without a membership."""
        if membership is None:
            return self.none()
        qs = self.filter(organization_id=membership.organization_id)
        if membership.manages:
            return qs
        named = Project.annotators.through.objects.filter(
            project_id=OuterRef("pk"), user_id=membership.user_id
        )
        # EXISTS rather than a join: no duplicate rows, so no DISTINCT over every column.
        return qs.filter(
            Q(annotator_access=Project.AnnotatorAccess.ALL) | Q(Exists(named)),
            status__in=OPEN_FOR_WORK,
        )

    def get_for_member(self, membership: Membership, pk) -> "Project | None":
        """The one project ``pk`` if ``for_member`` would list it, else None. The same rule
        checked on the fetched row: the annotate hot path skips compiling the EXISTS query."""
        project = self.filter(organization_id=membership.organization_id, pk=pk).first()
        if project is None or membership.manages:
            return project
        if project.status not in OPEN_FOR_WORK:
            return None
        if project.annotator_access == Project.AnnotatorAccess.ALL:
            return project
        named = project.annotators.through.objects.filter(
            project_id=project.pk, user_id=membership.user_id
        )
        return project if named.exists() else None


class Project(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        ARCHIVED = "archived", "Archived"

    class Mode(models.TextChoices):
        PAIRWISE = "pairwise", "Pairwise (A vs B)"
        BEST_WORST = "best_worst", "Best and worst of N"
        RANKING = "ranking", "Ranking of N"

    class AnnotatorAccess(models.TextChoices):
        ALL = "all", "Every annotator of the organization"
        CHOSEN = "chosen", "Only the chosen annotators"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="projects"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    guidelines = models.TextField(blank=True, help_text="Markdown, shown beside every item.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.PAIRWISE)
    questions = models.JSONField(
        default=list, blank=True, help_text="The question schema (see tasks/schema.py)."
    )
    html_layout = models.TextField(
        blank=True, help_text="Optional Potato-style layout with {{field}} placeholders."
    )
    # Overlap: every item gets `annotations_per_item` judgments; a random
    # `agreement_sample_percent` of items gets `agreement_sample_annotations` instead, so
    # agreement can be measured without paying for double annotation everywhere.
    annotations_per_item = models.PositiveSmallIntegerField(default=1)
    agreement_sample_percent = models.PositiveSmallIntegerField(default=0)
    agreement_sample_annotations = models.PositiveSmallIntegerField(default=2)
    quota_per_annotator = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most items one annotator may judge; empty: no limit."
    )
    allow_skip = models.BooleanField(default=True)
    skip_reason_required = models.BooleanField(default=False)
    reasoning_required = models.BooleanField(default=False)
    reasoning_min_length = models.PositiveIntegerField(default=0)
    assignment_timeout_minutes = models.PositiveIntegerField(default=30)
    gold_rate_percent = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(50)],
        help_text="Share of each annotator's items that are gold items (attention checks with "
        "a known answer), while gold items they have not seen are left. 0: none.",
    )
    discussion_visible_to_annotators = models.BooleanField(
        default=False,
        help_text="Annotators see the leads' discussion and final decision on items they judged.",
    )
    pairs_per_prompt = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Pairwise with more than two candidates: how many pairs to sample per "
        "prompt. Empty: every pair.",
    )
    candidate_fields = models.JSONField(
        default=list,
        blank=True,
        help_text="Fields of an imported row that hold candidate responses, e.g. "
        '["response_a", "response_b"]. Empty: response_* fields and a "responses" list.',
    )
    id_key = models.CharField(max_length=64, default="id")
    text_key = models.CharField(max_length=64, default="text")
    annotator_access = models.CharField(
        max_length=8, choices=AnnotatorAccess.choices, default=AnnotatorAccess.ALL
    )
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    source_config = models.TextField(blank=True, editable=False)
    import_warnings = models.JSONField(default=list, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(
        organization="organization", _manager_class=models.Manager.from_queryset(ProjectQuerySet)
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="project_name_per_org"),
            models.CheckConstraint(
                condition=Q(agreement_sample_percent__lte=100), name="sample_percent_lte_100"
            ),
            models.CheckConstraint(
                condition=Q(annotations_per_item__gte=1), name="at_least_one_annotation"
            ),
            models.CheckConstraint(condition=Q(gold_rate_percent__lte=50), name="gold_rate_lte_50"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from tasks.schema import default_questions, validate_questions

        errors = {}
        if not self.questions:
            self.questions = default_questions(self.mode)
        try:
            self.questions = validate_questions(self.questions, mode=self.mode)
        except ValidationError as exc:
            errors["questions"] = exc.messages
        if self.agreement_sample_percent and (
            self.agreement_sample_annotations <= self.annotations_per_item
        ):
            errors["agreement_sample_annotations"] = (
                "The agreement sample needs more annotations than every other item."
            )
        if self.skip_reason_required and not self.allow_skip:
            errors["skip_reason_required"] = "Skipping is not allowed in this project."
        if errors:
            raise ValidationError(errors)

    @property
    def rubric(self) -> list[dict]:
        """The rubric: the project's rating questions, scored per candidate."""
        return [q for q in self.questions if q["kind"] == "rating"]

    @property
    def preference_question(self) -> dict | None:
        return next((q for q in self.questions if q["kind"] == "preference"), None)


# Statuses in which annotators see a project and work on it.
OPEN_FOR_WORK = (Project.Status.ACTIVE, Project.Status.PAUSED)


class Prompt(models.Model):
    """One task for the annotators: a text, or a conversation whose last turn is answered."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200)
    text = models.TextField(help_text="The prompt, or the last user turn of a conversation.")
    messages = models.JSONField(
        null=True, blank=True, help_text='Multi-turn context: [{"role", "content"}, …].'
    )
    metadata = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=300, blank=True, help_text="File it was imported from.")
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the normalized text.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="prompt_id_per_project")
        ]
        indexes = [models.Index(fields=["project", "content_hash"], name="prompt_hash_idx")]

    def __str__(self) -> str:
        return self.external_id


class Candidate(models.Model):
    class Source(models.TextChoices):
        IMPORTED = "imported", "Imported"
        GENERATED = "generated", "Generated"
        CORRECTED = "corrected", "Corrected by an annotator"
        FEEDBACK_LOG = "feedback_log", "Feedback log"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="candidates")
    text = models.TextField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.IMPORTED)
    source_key = models.CharField(
        max_length=100, blank=True, help_text="The field it came from, e.g. response_a."
    )
    model = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    content_hash = models.CharField(
        max_length=64,
        help_text="SHA-256 of the text with LF line endings and no trailing whitespace "
        "(tasks.importers.rows.candidate_hash); the text itself is stored as received.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["id"]
        constraints = [
            # The same response twice for one prompt is a duplicate, whatever its source;
            # "the same" is candidate_hash: case, Unicode form and inner spacing count.
            models.UniqueConstraint(fields=["prompt", "content_hash"], name="candidate_once"),
            # One generated candidate per prompt and variant (model + exact parameters),
            # however often a generation job is re-run or resumed.
            models.UniqueConstraint(
                fields=["prompt", "source_key"],
                condition=Q(source="generated"),
                name="generated_once_per_variant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_id}/{self.pk}"

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


class Item(models.Model):
    """What one annotator sees at once: a prompt and 2..N of its candidates."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="items")
    mode = models.CharField(max_length=16, choices=Project.Mode.choices)
    candidates = models.ManyToManyField(Candidate, through="ItemCandidate", related_name="items")
    # Sorted candidate ids, "12-57": one item per set of candidates.
    candidate_key = models.CharField(max_length=500)
    target_annotations = models.PositiveSmallIntegerField(default=1)
    # Submitted + active assignments; kept by the allocator, read by it through an index.
    assignment_count = models.PositiveIntegerField(default=0)
    # Stable random order among equally covered items.
    random_order = models.IntegerField(default=0)
    # A gold item is an attention check with a known answer: served to every annotator at the
    # project's gold rate instead of through the overlap target, scored in the QC report.
    # Database defaults too: items are also written by COPY and by SQL (bulk builds, bench).
    gold = models.BooleanField(default=False, db_default=False)
    gold_outcome = models.CharField(
        max_length=16,
        blank=True,
        default="",
        db_default="",
        help_text="preferred / ranked / tie / both_bad",
    )
    gold_chosen = models.ForeignKey(
        "Candidate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The candidate a careful annotator prefers (the best, for N candidates).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "candidate_key"], name="item_once")
        ]
        indexes = [
            models.Index(
                fields=["project", "assignment_count", "random_order", "id"],
                name="item_allocation_idx",
            ),
            models.Index(
                fields=["project", "random_order"],
                condition=Q(gold=True),
                name="item_gold_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"item {self.pk} ({self.candidate_key})"


class ItemCandidate(models.Model):
    """A candidate's place in an item. Reached only through its item (which carries the
    organization), so it needs no scoped manager of its own."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="slots")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["item", "position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "candidate"], name="candidate_once_per_item"),
            models.UniqueConstraint(fields=["item", "position"], name="one_candidate_per_slot"),
        ]

    def __str__(self) -> str:
        return f"item {self.item_id} slot {self.position}: candidate {self.candidate_id}"


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> "ApiTokenQuerySet":
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """An organization's API token. Only a SHA-256 digest of the secret is stored: the
    secret is 256 random bits, so a fast digest is enough (no password stretching) and a
    database leak reveals no usable token."""

    PREFIX = "chs_"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What uses it, e.g. 'training pipeline'.")
    key_prefix = models.CharField(
        max_length=16, editable=False, help_text="The first characters, to recognise it."
    )
    key_digest = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ScopedManager(
        organization="organization", _manager_class=models.Manager.from_queryset(ApiTokenQuerySet)
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.key_prefix}…)"

    @staticmethod
    def digest(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    # How often last_used_at is written: once a minute is precise enough for "is this token
    # still used?" and keeps a busy pipeline from writing on every request.
    LAST_USED_RESOLUTION = timedelta(minutes=1)

    def touch(self) -> bool:
        """Note the token's use; True when this call wrote it (at most once a minute)."""
        now = timezone.now()
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - self.LAST_USED_RESOLUTION)
        tokens = ApiToken.objects.with_scopes_disabled().filter(stale, pk=self.pk)
        return tokens.update(last_used_at=now) == 1


class OrganizationJob(models.Model):
    """What every background job of an organization records: who started it, when it
    ran."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def failure(self) -> str:
        """For a failed job, "Failed: <reason>" (empty otherwise): what its page, the
        admin and the API show where the job's result would be, so that a failure is never
        mistaken for a result still to come."""
        if self.status != "failed":
            return ""
        return f"Failed: {self.failure_reason() or 'no reason was recorded.'}"

    def failure_reason(self) -> str:
        """Why the job failed, in words for the person who started it (no traceback: the
        worker's log has that)."""
        return self.error

    @staticmethod
    def reason_for(error: Exception, outcome: str) -> str:
        """What a job stores as its ``error`` when ``error`` stopped it: ``outcome`` ("The
        export could not be written") and the kind of fault, for the person who started it
        and the operator who fixes it; never the traceback or the data, which the worker's
        log has."""
        if isinstance(error, DatabaseError):
            cause = "the database refused one of its queries"
        elif isinstance(error, OSError) and error.strerror:
            cause = f'the server\'s file system said "{error.strerror}"'
        else:
            cause = "an unexpected error"
        return f"{outcome}: {cause} (the worker's log has the details)."


class ImportJob(OrganizationJob):
    """An upload being imported in the background: prompts into a project, or a Potato
    config with its data files. Progress while it runs is in the cache (the import itself
    is one transaction, invisible until it commits); the outcome is stored here."""

    class Kind(models.TextChoices):
        PROMPTS = "prompts", "Prompts into a project"
        POTATO = "potato", "Potato config and data"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="import_jobs"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PROMPTS)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    files = models.JSONField(default=list, help_text='[{"name", "path", "size"}] as uploaded')
    skip_invalid = models.BooleanField(default=False)
    allow_duplicates = models.BooleanField(default=False)
    total_bytes = models.BigIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        names = ", ".join(f["name"] for f in self.files)
        return f"import {self.pk}: {names} ({self.get_status_display()})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    def failure_reason(self) -> str:
        """The first problem, and how many more there are (the admin lists them all)."""
        if not self.errors:
            return ""
        first = self.errors[0]
        place = ", ".join(str(first[k]) for k in ("file", "where") if first.get(k))
        if first.get("key"):
            place += f", key '{first['key']}'"
        problem = f"{place}: {first['message']}" if place else first["message"]
        count = len(self.errors) + self.report.get("problems_not_listed", 0)
        if count == 1:
            return problem
        return f"{count} problems, nothing was imported; the first: {problem}"


class LLMEndpoint(models.Model):
    """An OpenAI-compatible server (Ollama's /v1, llama.cpp's server, vLLM, TGI) that drafts
    candidates. Only superusers configure endpoints, and each is enabled for chosen
    organizations: a tenant picks one of these, it can never name an address itself."""

    name = models.CharField(max_length=100, unique=True)
    # Not a URLField: Django's URL validator refuses single-label hosts such as a compose
    # service name ("ollama"); tasks.llm.check_base_url checks it instead.
    base_url = models.CharField(
        max_length=500, help_text="The OpenAI-compatible API root, e.g. http://ollama:11434/v1"
    )
    model = models.CharField(max_length=200, help_text="The model name the server knows.")
    # Write-only: kept for the requests, never shown back (see LLMEndpointForm).
    api_key = models.CharField(max_length=500, blank=True)
    timeout_seconds = models.FloatField(default=120, help_text="Per request.")
    max_concurrent_requests = models.PositiveSmallIntegerField(
        default=2, help_text="Across all workers and jobs."
    )
    enabled = models.BooleanField(default=True)
    all_organizations = models.BooleanField(
        default=False, help_text="Enabled for every organization."
    )
    organizations = models.ManyToManyField(
        Organization, blank=True, related_name="llm_endpoints", help_text="Enabled for these."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "LLM endpoint"

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"

    @classmethod
    def for_organization(cls, organization):
        """Endpoints this organization may use."""
        return cls.objects.filter(
            Q(all_organizations=True) | Q(organizations=organization), enabled=True
        ).distinct()


class GenerationRecipe(models.Model):
    """A named list of variants; each variant is one request per prompt:
    {"name", "system_prompt", "temperature", "top_p", "max_tokens", "seed"}."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    variants = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="recipe_name_once")
        ]

    def __str__(self) -> str:
        return self.name


class GenerationJob(OrganizationJob):
    """Candidates drafted for a project's prompts by one endpoint with one recipe.

    Counters move as requests finish; ``epoch`` changes when the job is (re)dispatched so
    that a chunk message of an earlier dispatch, delivered late, does nothing."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLING = "cancelling", "Cancelling"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="generation_jobs")
    endpoint = models.ForeignKey(LLMEndpoint, on_delete=models.PROTECT, related_name="jobs")
    model = models.CharField(max_length=200, help_text="The endpoint's model when started.")
    recipe_name = models.CharField(max_length=100)
    variants = models.JSONField(help_text="The recipe's variants as run, with their keys.")
    prompt_ids = models.JSONField(
        null=True, blank=True, help_text="Selected prompts; empty: every prompt of the project."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    epoch = models.PositiveIntegerField(default=0)
    chunks_left = models.IntegerField(default=0)
    # Chunks of this epoch that finished: a chunk delivered twice counts once.
    finished_chunks = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        return f"generation {self.pk}: {self.recipe_name} on {self.model} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED


class GenerationFailure(models.Model):
    """A prompt and variant that got no candidate in a job, and why (retries exhausted, or
    the model repeated another candidate's text). A job does not ask for it again."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="failures")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    variant_key = models.CharField(max_length=100)
    variant_name = models.CharField(max_length=100)
    message = models.TextField()
    attempts = models.PositiveSmallIntegerField(default=1)
    duplicate = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="job__organization")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "prompt", "variant_key"], name="generation_failure_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.variant_name} for prompt {self.prompt_id}: {self.message}"


class AuditTrailIsAppendOnly(Exception):
    """Raised on any attempt to change or delete an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditTrailIsAppendOnly("Audit events cannot be changed.")

    def delete(self):
        raise AuditTrailIsAppendOnly("Audit events cannot be deleted.")

    _raw_delete = delete


class AuditEvent(models.Model):
    """Who did what to which object, when and from where. Append-only: the model refuses
    updates and deletes, and on PostgreSQL a trigger refuses them for any SQL too.

    The organization and the actor are kept as plain ids (no database constraint, nothing
    cascades): the trail outlives the people and objects it talks about, and deleting a
    user or an organization never needs to rewrite it. ``actor_label`` keeps who it was
    (an e-mail, ``token:chs_…`` or ``system``) as it was at the time."""

    organization = models.ForeignKey(
        Organization,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=254)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text="{field: [before, after]}")
    data = models.JSONField(default=dict, blank=True)

    objects = ScopedManager(
        organization="organization",
        _manager_class=models.Manager.from_queryset(AuditEventQuerySet),
    )

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-at"], name="audit_org_at_idx"),
            models.Index(fields=["organization", "action"], name="audit_org_action_idx"),
            models.Index(
                fields=["organization", "object_type", "object_id"], name="audit_org_object_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditTrailIsAppendOnly("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditTrailIsAppendOnly("Audit events cannot be deleted.")
