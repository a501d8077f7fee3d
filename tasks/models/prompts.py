"""What annotators judge: prompts, their candidate responses, and items (a prompt with
2..N of its candidates in fixed slots)."""

from django.contrib.postgres.indexes import HashIndex
from django.db import models
from django.db.models import Q
from django_scopes import ScopedManager

from tasks.models.organizations import Organization
from tasks.models.projects import Project

# Tenant keys. A prompt's organization is its project's; a candidate's is its prompt's; an
# item (and a feedback signal) has its prompt's project and organization. The database holds
# each of these as one composite foreign key (migration tasks/0022_tenant_keys), e.g.
# (prompt_id, project_id, organization_id) -> tasks_prompt (id, project_id, organization_id),
# in place of a key per column: a row can then never name a prompt of another project or
# organization, and a bulk import pays one foreign-key check per row where it paid two or
# three (about a third of PostgreSQL's time in a feedback import, issue 20). The fields
# below therefore carry no constraint of their own (``db_constraint=False``); their indexes
# stay. tests/tasks/test_tenant_keys.py checks that the database refuses a mismatch.
_TENANT = {"on_delete": models.CASCADE, "db_constraint": False}


class Prompt(models.Model):
    """One task for the annotators: a text, or a conversation whose last turn is answered."""

    organization = models.ForeignKey(Organization, related_name="+", **_TENANT)
    project = models.ForeignKey(Project, related_name="prompts", **_TENANT)
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
            # external_id first: an import's lookup by id is led by it (tasks.dbstats)
            models.UniqueConstraint(
                fields=["external_id", "project"], name="prompt_id_per_project"
            ),
            # What the tenant keys of candidates, items and signals refer to (TENANT_KEYS).
            models.UniqueConstraint(fields=["id", "organization"], name="prompt_tenant_org"),
            models.UniqueConstraint(
                fields=["id", "project", "organization"], name="prompt_tenant_project"
            ),
        ]
        # A prompt is looked up by content only with equality (an import's duplicate check,
        # the feedback import's probe), the project a filter (tasks.dbstats): a hash index,
        # a quarter the size of the B-tree on (content_hash, project) it replaced, so it
        # stays in PostgreSQL's buffers where a million random 64-character keys did not
        # (a 1,000,000-row feedback import: its probes and prompt COPYs 23.5 -> 16.2 s).
        indexes = [HashIndex(fields=["content_hash"], name="prompt_hash_idx")]

    def __str__(self) -> str:
        return self.external_id


class Candidate(models.Model):
    class Source(models.TextChoices):
        IMPORTED = "imported", "Imported"
        GENERATED = "generated", "Generated"
        CORRECTED = "corrected", "Corrected by an annotator"
        FEEDBACK_LOG = "feedback_log", "Feedback log"
        CHAT = "chat", "Chat reply"

    organization = models.ForeignKey(Organization, related_name="+", **_TENANT)
    # candidate_once (prompt_id, content_hash) is the index by prompt: no second one
    prompt = models.ForeignKey(Prompt, related_name="candidates", db_index=False, **_TENANT)
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

    organization = models.ForeignKey(Organization, related_name="+", **_TENANT)
    project = models.ForeignKey(Project, related_name="items", **_TENANT)
    prompt = models.ForeignKey(Prompt, related_name="items", **_TENANT)
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
