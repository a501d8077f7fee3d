"""Chat & Choose: an expert chats with a model, each user turn gets N candidate replies, the
expert judges them and the conversation goes on from the chosen (or corrected) one.

A conversation is a tree of ``Message`` rows (system → user → assistant replies → user …):
every reply of a turn is a child of the user message it answers, and the conversation's
``current`` message is the leaf the expert writes under next. Going back and continuing
from another reply makes a new branch. Each user turn that got its replies is also a
``Prompt`` (the conversation prefix as messages), its replies are ``Candidate`` rows
(source ``chat``) and the turn is an ``Item`` judged through an ``Assignment`` like any
other, so overlap, gold, agreement, adjudication, the leaderboard and exports apply.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django_scopes import ScopedManager

from tasks.models import (
    Candidate,
    Item,
    LLMEndpoint,
    Organization,
    OrganizationJob,
    Project,
    Prompt,
)
from tasks.models.jobs import JobStatus


class ChatSettings(models.Model):
    """A lead's guardrails for a chat project: which endpoints and recipes it may use, how
    many replies a turn gets, how long a conversation may grow, and how many replies the
    organization may have generating at once on one endpoint."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="chat_settings")
    endpoints = models.ManyToManyField(LLMEndpoint, related_name="+", blank=True)
    recipes = models.JSONField(default=list, help_text="Names of the recipes experts may use.")
    system_prompt = models.TextField(blank=True)
    replies_per_turn = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(2), MaxValueValidator(4)]
    )
    max_turns = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    concurrent_replies = models.PositiveSmallIntegerField(
        default=4,
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Replies this organization may have generating at once on one endpoint.",
    )

    objects = ScopedManager(organization="organization")

    class Meta:
        verbose_name_plural = "chat settings"

    def __str__(self) -> str:
        return f"chat settings of {self.project}"

    @property
    def judging_mode(self) -> str:
        """How a turn is judged: two replies as a pair (labels with strength), more as a
        ranking (the annotation app's own modes)."""
        if self.replies_per_turn == 2:
            return Project.Mode.PAIRWISE
        return Project.Mode.RANKING


class ConversationQuerySet(models.QuerySet):
    def of_expert(self, user) -> "ConversationQuerySet":
        return self.filter(expert=user)


class Conversation(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ENDED = "ended", "Ended"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="conversations")
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    seed_prompt = models.ForeignKey(
        Prompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint = models.ForeignKey(LLMEndpoint, on_delete=models.PROTECT, related_name="+")
    recipe_name = models.CharField(max_length=100)
    system_prompt = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    # The leaf the next user turn goes under (a reply, or the system message at the start).
    current = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(
        organization="organization",
        _manager_class=models.Manager.from_queryset(ConversationQuerySet),
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"conversation {self.pk}"


class Message(models.Model):
    """One node of a conversation's tree."""

    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField()
    # A reply: the candidate it is; a corrected reply: the correction's candidate.
    candidate = models.ForeignKey(
        Candidate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The turn's item: on the user message it answers and on each of its replies.
    item = models.ForeignKey(
        Item, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The reply the conversation went on from after the judgment (the corrected one, if any).
    chosen = models.BooleanField(default=False)
    corrected = models.BooleanField(default=False)
    # Place among its siblings (the reply's variant number; 0 for user and system messages).
    order = models.PositiveSmallIntegerField(default=0)
    depth = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedManager(organization="organization")

    class Meta:
        ordering = ["depth", "order", "id"]
        indexes = [models.Index(fields=["conversation", "depth"], name="chat_message_tree_idx")]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk}"


class ChatTurn(OrganizationJob):
    """The replies to one user message, generated by a worker (``chat.jobs.generate_turn``)
    and streamed through Redis. A failed or stopped turn is retried as a new row; the one
    that succeeded wrote the turn's prompt, candidates, item and reply messages."""

    Status = JobStatus.with_states("Status", ("CANCELLED", "cancelled", "Stopped"))
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    # The user message answered (not "message": OrganizationJob has a message_id).
    user_message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="turns")
    endpoint = models.ForeignKey(LLMEndpoint, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200)
    recipe_name = models.CharField(max_length=100)
    variants = models.JSONField(help_text="The variants asked for, with their keys.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    item = models.ForeignKey(
        Item, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        return f"chat turn {self.pk} ({self.status})"

    def audit_facts(self) -> dict:
        return {"conversation": self.conversation_id, "model": self.model}

    @property
    def project_id(self) -> int:
        """The audit trail files every job under its project (``tasks.audit.receivers``);
        a turn's is its conversation's."""
        return self.conversation.project_id
