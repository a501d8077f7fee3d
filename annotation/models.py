"""What annotators produce: an Assignment (an item held by one annotator, with the order
its candidates were shown in), the Judgment it ends in (preferences stored as candidate
ids, never as the letters on screen) with its revisions, a lead's Adjudication of a
disputed item, and the notes of an item's discussion."""

from django.conf import settings
from django.db import models
from django_scopes import ScopedManager

from tasks.models import Candidate, Item, Organization, Project


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
        indexes = [models.Index(fields=["project", "annotator"], name="judgment_by_person_idx")]

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
