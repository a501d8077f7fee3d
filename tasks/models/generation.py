"""Candidate generation: LLM endpoints, recipes, generation jobs and their failures."""

from django.db import models
from django.db.models import Q
from django_scopes import ScopedManager

from tasks.models.jobs import JobStatus, OrganizationJob
from tasks.models.organizations import Organization
from tasks.models.projects import Project
from tasks.models.prompts import Prompt


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

    Status = JobStatus.with_states(
        "Status",
        ("CANCELLING", "cancelling", "Cancelling"),
        ("CANCELLED", "cancelled", "Cancelled"),
    )

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    RERUN_WHEN_LOST = False  # tasks.generation.resume_stalled resumes just what is missing

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
    # Chunks of this epoch a worker took: one taken, unfinished and silent was lost with its
    # worker (a chunk not taken yet still waits in the queue).
    started_chunks = models.JSONField(default=list, blank=True)

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        return f"generation {self.pk}: {self.recipe_name} on {self.model} ({self.status})"

    def audit_facts(self) -> dict:
        return {
            "endpoint": self.endpoint_id,
            "model": self.model,
            "recipe": self.recipe_name,
            "done": self.done,
            "failed": self.failed,
            "total": self.total,
        }


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
