"""Preference signal the enterprise already has, and the pairs built from it.

A ``FeedbackSignal`` is one piece of evidence read from a source file: a chat log's thumbs,
rating, regeneration or user edit, an A/B test's counts, a reviewer's grade, an expert's
correction. Its texts are stored as the project's prompts and candidates (source
``feedback_log``), so everything downstream (items, judgments, exports) works on them as on
any other. ``SignalPair`` is a chosen-over-rejected pair one rule built from signals, with a
confidence and the reason; ``KTOExample`` one reply judged alone (desirable or not).
"""

from django.db import models
from django_scopes import ScopedManager

from tasks.models.jobs import ImportJob
from tasks.models.organizations import Organization
from tasks.models.projects import Project
from tasks.models.prompts import _TENANT, Candidate, Item, Prompt


class FeedbackSignal(models.Model):
    """One signal, as read. What ``reply`` and ``other`` hold depends on the kind:

    - ``feedback`` (a chat log): ``reply`` is the model's reply the user reacted to;
      ``other`` is the reply it replaced when the user regenerated (``data["kept"]`` says
      which one the user kept), or the user's edit of ``reply``;
    - ``ab_test``: ``reply`` is variant A, ``other`` variant B, ``data`` their wins and
      impressions (or a winner);
    - ``grade``: ``reply`` is the graded output; ``score`` its grade on 0..1 and ``data``
      the grade as given with its scale;
    - ``correction``: ``reply`` the original output, ``other`` the expert's correction.
    """

    class Kind(models.TextChoices):
        FEEDBACK = "feedback", "Chat feedback log"
        AB_TEST = "ab_test", "A/B test result"
        GRADE = "grade", "Graded review"
        CORRECTION = "correction", "Expert correction"

    # organization, project and prompt: one tenant key (tasks.models.prompts.TENANT_KEYS)
    organization = models.ForeignKey(Organization, related_name="+", **_TENANT)
    # signal_by_prompt_idx (project, kind, prompt) is the index by project: no second one
    project = models.ForeignKey(Project, related_name="feedback_signals", db_index=False, **_TENANT)
    # Provenance: the import that read it. No constraint in the database: every row of an
    # import names the same job, and checking it row by row was ~5% of PostgreSQL's time in
    # a feedback import; deleting a job clears it (Django's SET_NULL, through the index).
    job = models.ForeignKey(
        ImportJob,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        db_constraint=False,
        related_name="+",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    prompt = models.ForeignKey(Prompt, related_name="+", **_TENANT)
    reply = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    other = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    conversation_key = models.CharField(
        max_length=64,
        blank=True,
        help_text="SHA-256 of the conversation before the reply (normalized): thumbs are "
        "compared only between replies to the same conversation.",
    )
    thumbs = models.SmallIntegerField(null=True, blank=True, help_text="+1 up, -1 down.")
    score = models.FloatField(
        null=True, blank=True, help_text="A rating or grade mapped onto 0..1 by its scale."
    )
    complaint = models.BooleanField(default=False)
    model = models.CharField(max_length=200, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    user_hash = models.CharField(
        max_length=64,
        blank=True,
        help_text="The user or reviewer id, salted and hashed (never stored as given).",
    )
    data = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=300, blank=True, help_text="File it was read from.")
    line = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        indexes = [
            models.Index(fields=["project", "kind", "prompt"], name="signal_by_prompt_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk} ({self.source}:{self.line})"


class Rule(models.TextChoices):
    """How a pair or a KTO row was derived."""

    EDIT = "edit", "User edit over the original reply"
    REGENERATION = "regeneration", "Kept regeneration over the discarded one"
    THUMBS = "thumbs", "Thumbs-up reply over a thumbs-down reply"
    AB_TEST = "ab_test", "A/B test winner over the loser"
    GRADE = "grade", "Higher-graded output over a lower-graded one"
    CORRECTION = "correction", "Expert correction over the original"
    RATING = "rating", "A rated reply (KTO)"
    STYLE_RULE = "style_rule", "Rule-following over rule-violating"


class SignalPair(models.Model):
    """Chosen over rejected, as one rule read the signals (``evidence``: their ids)."""

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (confident enough)"
        TO_VERIFY = "to_verify", "Waiting for an expert"
        CONTRADICTED = "contradicted", "Contradicted by another signal (not exported)"
        CONFIRMED = "confirmed", "Confirmed by experts"
        FLIPPED = "flipped", "Flipped by experts"
        REJECTED = "rejected", "Rejected by experts"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="signal_pairs")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    chosen = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    rejected = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    rule = models.CharField(max_length=16, choices=Rule.choices)
    confidence = models.FloatField(help_text="0..1: how sure the rule is of the direction.")
    reason = models.TextField(help_text="Why, in words (counts, test result, margin).")
    evidence = models.JSONField(default=list, help_text="Ids of the signals it rests on.")
    status = models.CharField(max_length=16, choices=Status.choices)
    item = models.ForeignKey(
        Item,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The verification item experts judge it in.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "chosen", "rejected", "rule"], name="signal_pair_once"
            ),
            models.CheckConstraint(
                condition=models.Q(confidence__gte=0, confidence__lte=1),
                name="signal_pair_confidence_0_1",
            ),
        ]
        indexes = [models.Index(fields=["project", "status"], name="signal_pair_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_rule_display()}: {self.chosen_id} over {self.rejected_id}"


class KTOExample(models.Model):
    """One reply judged on its own: desirable (thumbs up, a high rating) or not."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="kto_examples")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+")
    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="+")
    desirable = models.BooleanField()
    rule = models.CharField(max_length=16, choices=Rule.choices)
    confidence = models.FloatField()
    signal = models.ForeignKey(FeedbackSignal, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "signal"], name="kto_example_once")
        ]

    def __str__(self) -> str:
        return f"{'desirable' if self.desirable else 'undesirable'} {self.candidate_id}"
