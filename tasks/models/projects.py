"""Projects: their question schema, policies and who may work on them."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django_scopes import ScopedManager

from tasks import sqlrows
from tasks.feedback.settings import validate_pair_settings
from tasks.models.organizations import Membership, Organization
from tasks.schema import default_questions, validate_questions


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
        found = sqlrows.select(_PROJECT, [pk, membership.organization_id], (Project,))
        project = found[0] if found else None
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


# What an annotator answers is decided by these fields; a change makes a new schema version.
SCHEMA_FIELDS = ("questions", "mode", "html_layout")


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
        # Experts chat with a model and judge each turn's replies (the chat app).
        CHAT = "chat", "Chat & Choose"

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
    schema_version = models.PositiveIntegerField(
        default=1,
        db_default=1,
        editable=False,
        help_text="Goes up by one whenever the questions, the mode or the layout change; every "
        "judgment keeps the version it was made under.",
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

    class AllocationPolicy(models.TextChoices):
        LEAST_COVERED = "least_covered", "Least covered first"
        UNCERTAIN = "uncertain", "Most uncertain pair of sources first (Bradley–Terry)"

    allocation_policy = models.CharField(
        max_length=16,
        choices=AllocationPolicy.choices,
        default=AllocationPolicy.LEAST_COVERED,
        help_text="Uncertain: among the next least-covered items, the one whose candidates' "
        "sources are the closest match under the current Bradley–Terry fit comes first "
        "(for leaderboards of more than two sources; annotation.allocator).",
    )
    active_random_percent = models.PositiveSmallIntegerField(
        default=20,
        validators=[MaxValueValidator(100)],
        help_text="With the uncertain policy: the share of items still handed out in the "
        "plain least-covered order, so every pair keeps being measured.",
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
    pair_settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="How pairs are built from feedback signals (tasks/feedback/pairs.py): "
        "thresholds for confidence, A/B significance, grade margin; empty: the defaults.",
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
            # What prompts' tenant key refers to (tasks.models.prompts.TENANT_KEYS).
            models.UniqueConstraint(fields=["id", "organization"], name="project_tenant_org"),
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

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        version = self._next_schema_version(update_fields)
        if update_fields is not None and version != self.schema_version:
            kwargs["update_fields"] = {*update_fields, "schema_version"}
        self.schema_version = version
        super().save(*args, **kwargs)

    def _next_schema_version(self, update_fields) -> int:
        """The stored version, plus one if this save changes what annotators answer."""
        if self._state.adding or self.pk is None:
            return self.schema_version
        if update_fields is not None and not set(SCHEMA_FIELDS) & set(update_fields):
            return self.schema_version
        stored = (
            type(self)
            ._base_manager.filter(pk=self.pk)
            .values(*SCHEMA_FIELDS, "schema_version")
            .first()
        )
        if stored is None:
            return self.schema_version
        changed = any(stored[f] != getattr(self, f) for f in SCHEMA_FIELDS)
        return stored["schema_version"] + changed

    def clean(self) -> None:
        errors = {}
        if not self.questions:
            self.questions = default_questions(self.mode)
        try:
            self.questions = validate_questions(self.questions, mode=self.mode)
        except ValidationError as exc:
            errors["questions"] = exc.messages
        try:
            validate_pair_settings(self.pair_settings)
        except ValidationError as exc:
            errors["pair_settings"] = exc.messages
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


# The project of every annotate and chat request (``get_for_member``), written out
# (tasks.sqlrows); the organization's own only.
_PROJECT = (
    f"SELECT {sqlrows.columns('p', Project)} FROM tasks_project p "  # noqa: S608 (names)
    "WHERE p.id = %s AND p.organization_id = %s"
)
