"""What annotators produce: an Assignment (an item held by one annotator, with the order
its candidates were shown in), the Judgment it ends in (preferences stored as candidate
ids, never as the letters on screen) with its revisions, a lead's Adjudication of a
disputed item, and the notes of an item's discussion."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django_scopes import ScopedManager

from tasks.models import Candidate, Item, LLMEndpoint, Organization, OrganizationJob, Project


class Assignment(models.Model):
    """One item given to one annotator, with the order its candidates are shown in."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired (reclaimed)"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Candidate ids left to right (or 1..N) as this annotator sees them: "Response A" is a
    # position on screen, randomized per assignment to cancel position bias.
    display_order = models.JSONField(default=list)
    skip_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="one_assignment_per_person")
        ]
        indexes = [
            models.Index(fields=["annotator", "project", "status"], name="assignment_mine_idx"),
            models.Index(fields=["project", "status", "expires_at"], name="assignment_stale_idx"),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}: item {self.item_id} → {self.annotator_id} ({self.status})"


class Judgment(models.Model):
    """What an annotator decided for one assignment, resolved to candidate ids. The letters
    A/B exist only on screen; ``label`` keeps the label text that was clicked."""

    class Outcome(models.TextChoices):
        PREFERRED = "preferred", "One response preferred"
        TIE = "tie", "Tie"
        BOTH_BAD = "both_bad", "Both bad"
        RANKED = "ranked", "Ranked / best and worst"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judgments")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="judgments")
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="judgment")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="judgments"
    )
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    chosen = models.ForeignKey(
        Candidate,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Preferred (pairwise) or best (best/worst, ranking).",
    )
    rejected = models.ForeignKey(
        Candidate,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="The other (pairwise) or worst (best/worst, ranking).",
    )
    label = models.CharField(max_length=200, blank=True, help_text="The label that was picked.")
    strength = models.PositiveSmallIntegerField(null=True, blank=True)
    ranking = models.JSONField(default=list, blank=True, help_text="Candidate ids, best first.")
    answers = models.JSONField(default=dict, blank=True, help_text="Other questions, by name.")
    schema_version = models.PositiveIntegerField(
        default=1,
        db_default=1,
        help_text="The project's schema version the answers were given under.",
    )
    rubric_scores = models.JSONField(
        default=dict, blank=True, help_text='{"<candidate id>": {"<criterion>": score}}'
    )
    reasoning = models.TextField(blank=True)
    corrected = models.ForeignKey(
        Candidate,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The annotator's corrected response (a Candidate with source=corrected).",
    )
    time_spent_ms = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # In order of the time spent: the QC report's median per annotator is the middle
            # entry of the annotator's range (qc.report._median_times).
            models.Index(
                fields=["project", "annotator", "time_spent_ms"], name="judgment_by_person_idx"
            ),
            # What changed since a QC report (qc.tally) and the periodic refresh's newest.
            models.Index(fields=["project", "updated_at"], name="judgment_changed_idx"),
        ]

    def __str__(self) -> str:
        return f"judgment {self.pk} on item {self.item_id} ({self.outcome})"


class JudgmentRevision(models.Model):
    """A judgment as it was before an edit (edits keep history)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    judgment = models.ForeignKey(Judgment, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    replaced_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["judgment", "version"]
        constraints = [
            models.UniqueConstraint(fields=["judgment", "version"], name="one_revision_per_version")
        ]

    def __str__(self) -> str:
        return f"judgment {self.judgment_id} v{self.version}"


class Adjudication(models.Model):
    """A lead's final decision on an item, with a note: the item's resolved preference,
    which exports take over the annotators' votes. One per item; a new decision replaces it.
    The shape is a judgment's: chosen / rejected (best / worst), the full ranking when one
    was given, or the outcome tie / both-bad."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="adjudications")
    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="adjudication")
    outcome = models.CharField(max_length=16, choices=Judgment.Outcome.choices)
    chosen = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    rejected = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    ranking = models.JSONField(default=list, blank=True, help_text="Candidate ids, best first.")
    note = models.TextField(help_text="Why: the standard this decision sets.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return f"adjudication of item {self.item_id} ({self.outcome})"


class ItemNote(models.Model):
    """A note in the discussion of an item (leads write; annotators who judged the item read
    it when the project allows)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["item", "created_at", "id"]

    def __str__(self) -> str:
        return f"note {self.pk} on item {self.item_id}"


# --- the AI judge (annotation/judge.py) ------------------------------------------------------
# Kept out of Judgment: a Judgment is one person's answer (one per person and item, part of
# exports and of the humans' QC); the judge is a model whose answers are held up against them.

DEFAULT_JUDGE_TEMPLATE = """You are judging two responses to the same prompt for a preference
dataset.

Guidelines for the judges:
{guidelines}

Rubric:
{rubric}

Prompt:
{prompt}

Response 1:
{response_1}

Response 2:
{response_2}

Which response is better by the guidelines? Give a short rationale (two or three
sentences), then end with a final line that is exactly one of:
Verdict: 1
Verdict: 2
Verdict: tie"""


class JudgeConfig(models.Model):
    """A project's AI judge: which LLM endpoint, the prompt it is given, how often it is
    asked per order, and how its decisions route work (annotation/judge.py)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="judge_config")
    endpoint = models.ForeignKey(LLMEndpoint, on_delete=models.PROTECT, related_name="+")
    prompt_template = models.TextField(
        default=DEFAULT_JUDGE_TEMPLATE,
        help_text="Placeholders: {guidelines} {rubric} {prompt} {response_1} {response_2}.",
    )
    samples_per_order = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="Times the judge is asked in each order (A then B, B then A).",
    )
    temperature = models.FloatField(
        default=0.7, validators=[MinValueValidator(0), MaxValueValidator(2)]
    )
    max_tokens = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(16), MaxValueValidator(4096)]
    )
    routing = models.BooleanField(
        default=False,
        help_text="Send to people only the items the judge is unsure of, and an audit share.",
    )
    margin_threshold = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Below this margin (|wins 1 - wins 2| / samples) an item goes to people.",
    )
    audit_percent = models.PositiveSmallIntegerField(
        default=10,
        validators=[MaxValueValidator(100)],
        help_text="Share of the judge-decided items still sent to people, to audit it.",
    )
    include_in_exports = models.BooleanField(
        default=False, help_text="Exports may include judge-decided pairs, marked as such."
    )
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedManager(organization="organization")

    def __str__(self) -> str:
        return f"judge of project {self.project_id}"


class JudgeRun(OrganizationJob):
    """One pass of the judge over a project's pairs: every pair in both orders, k samples
    each. ``settings`` is the configuration as it was when the run was asked for."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="judge_runs")
    endpoint = models.ForeignKey(LLMEndpoint, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200, help_text="The endpoint's model when started.")
    settings = models.JSONField(default=dict)
    items = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0, help_text="Verdicts to ask for.")
    done = models.PositiveIntegerField(default=0, help_text="Verdicts stored.")
    unparsed = models.PositiveIntegerField(default=0)
    figures = models.JSONField(default=dict, blank=True)

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        return f"judge run {self.pk} on {self.model} ({self.status})"

    def audit_facts(self) -> dict:
        return {"model": self.model, "items": self.items, "done": self.done, "total": self.total}


class JudgeVerdict(models.Model):
    """One answer of the judge: an item shown in one order ("AB": its first candidate by id
    as Response 1; "BA": swapped), sample number ``sample``. The decision is stored in
    candidate ids; ``rationale`` is the model's text, shown escaped and never trusted."""

    class Order(models.TextChoices):
        AB = "AB", "First candidate shown first"
        BA = "BA", "Second candidate shown first"

    class Outcome(models.TextChoices):
        PREFERRED = "preferred", "One response preferred"
        TIE = "tie", "Tie"
        UNPARSED = "unparsed", "No verdict could be read"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="verdicts")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    order = models.CharField(max_length=2, choices=Order.choices)
    sample = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    chosen = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    rejected = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    rationale = models.TextField(blank=True)
    raw = models.TextField(blank=True, help_text="The reply, truncated.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["item", "order", "sample"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "item", "order", "sample"], name="judge_verdict_once"
            )
        ]

    def __str__(self) -> str:
        return f"verdict on item {self.item_id} ({self.order} #{self.sample}): {self.outcome}"


class JudgeDecision(models.Model):
    """The judge's decision on one item in one run, from all its verdicts: the candidate
    with more wins (a tie when equal), the margin |wins 1 - wins 2| / verdicts asked,
    whether the decision depends on the order shown, agreement with a gold answer, and
    whether the item goes to people (``route_reason`` says why)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="decisions")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="judge_decisions")
    outcome = models.CharField(max_length=16, choices=JudgeVerdict.Outcome.choices)
    chosen = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    rejected = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    wins_first = models.PositiveSmallIntegerField(default=0)
    wins_second = models.PositiveSmallIntegerField(default=0)
    ties = models.PositiveSmallIntegerField(default=0)
    unparsed = models.PositiveSmallIntegerField(default=0)
    margin = models.FloatField(default=0)
    flipped = models.BooleanField(default=False)
    agrees_with_gold = models.BooleanField(null=True, blank=True)
    routed_to_humans = models.BooleanField(default=True)
    route_reason = models.CharField(max_length=200, blank=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["item"]
        constraints = [models.UniqueConstraint(fields=["run", "item"], name="judge_decision_once")]

    def __str__(self) -> str:
        return f"judge decision on item {self.item_id}: {self.outcome}"
