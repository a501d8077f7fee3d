"""The API's representations of the tasks app's nouns: projects (with their question
schema), prompts, import and generation jobs with their progress, LLM endpoints, and the
request bodies of imports and generation."""

from rest_framework import serializers

from tasks import generation, imports
from tasks.importers.feedback import KINDS, FeedbackOptionsInvalid, check_options
from tasks.imports import check_config_upload, check_data_uploads
from tasks.models import GenerationFailure, GenerationJob, ImportJob, LLMEndpoint, Project


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "guidelines",
            "status",
            "mode",
            "questions",
            "html_layout",
            "annotations_per_item",
            "agreement_sample_percent",
            "agreement_sample_annotations",
            "quota_per_annotator",
            "allow_skip",
            "skip_reason_required",
            "reasoning_required",
            "reasoning_min_length",
            "assignment_timeout_minutes",
            "pairs_per_prompt",
            "gold_rate_percent",
            "discussion_visible_to_annotators",
            "annotator_access",
            "id_key",
            "text_key",
            "candidate_fields",
            "import_warnings",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.ListField(
        child=serializers.FileField(), allow_empty=False, help_text="One or more data files."
    )
    skip_invalid = serializers.BooleanField(default=False)
    allow_duplicates = serializers.BooleanField(default=False)

    def validate_file(self, files):
        return check_data_uploads(files)


class FeedbackUploadSerializer(serializers.Serializer):
    """A feedback import: its files and options (tasks.importers.feedback describes the
    formats). ``validated_data["options"]`` is what the job stores."""

    file = serializers.ListField(
        child=serializers.FileField(), allow_empty=False, help_text="One or more data files."
    )
    kind = serializers.ChoiceField(choices=KINDS, default="auto")
    scale = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        max_length=50,
        help_text="Grade scale: two numbers (1, 5) or labels from worst to best.",
    )
    redact = serializers.BooleanField(default=False)
    redact_pattern = serializers.ListField(
        child=serializers.CharField(max_length=300, trim_whitespace=False),
        required=False,
        default=list,
        help_text="Regular expressions whose matches are replaced (repeat the field).",
    )
    skip_invalid = serializers.BooleanField(default=False)

    def validate_file(self, files):
        return check_data_uploads(files)

    def validate(self, attrs):
        try:
            attrs["options"] = check_options(
                kind=attrs["kind"],
                scale=attrs.get("scale"),
                redact=attrs["redact"],
                redact_patterns=attrs.get("redact_pattern") or [],
            )
        except FeedbackOptionsInvalid as exc:
            raise serializers.ValidationError(str(exc)) from None
        return attrs


class PotatoUploadSerializer(serializers.Serializer):
    config = serializers.FileField(help_text="The Potato config.yaml.")
    data = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        default=list,
        help_text="The data files its data_files name.",
    )
    skip_invalid = serializers.BooleanField(default=False)

    def validate_config(self, upload):
        return check_config_upload(upload)

    def validate_data(self, files):
        return check_data_uploads(files)


# What every job shows of its lifecycle (tasks.models.OrganizationJob), after its own fields.
JOB_FIELDS = [
    "status",
    "status_note",
    "failure",
    "error",
    "created_at",
    "started_at",
    "finished_at",
]


class JobSerializer(serializers.ModelSerializer):
    """A background job: its own fields, then JOB_FIELDS, all read-only."""

    failure = serializers.CharField(
        read_only=True, help_text='"Failed: <reason>" when the job failed, else empty.'
    )
    status_note = serializers.CharField(
        read_only=True,
        help_text="What the status alone does not say (a queued job waiting for the job "
        "queue to be reachable again), else empty.",
    )


class ImportJobSerializer(JobSerializer):
    progress = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = ImportJob
        fields = [
            "id",
            "kind",
            "project",
            "files",
            "progress",
            "report",
            "errors",
            *JOB_FIELDS,
        ]
        read_only_fields = fields

    def get_progress(self, job) -> dict:
        return imports.progress_of(job)

    def get_files(self, job) -> list[dict]:
        return [{"name": f["name"], "size": f["size"]} for f in job.files]


class GenerationFailureSerializer(serializers.ModelSerializer):
    prompt_external_id = serializers.CharField(source="prompt.external_id")

    class Meta:
        model = GenerationFailure
        fields = ["prompt", "prompt_external_id", "variant_name", "attempts", "message"]
        read_only_fields = fields


class GenerationJobSerializer(JobSerializer):
    endpoint = serializers.SlugRelatedField(slug_field="name", read_only=True)
    progress = serializers.SerializerMethodField()
    failures = serializers.SerializerMethodField()
    prompts_selected = serializers.SerializerMethodField(
        help_text="How many prompts were selected; null: every prompt of the project."
    )

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "project",
            "endpoint",
            "model",
            "recipe_name",
            "variants",
            "prompts_selected",
            "progress",
            "failures",
            *JOB_FIELDS,
        ]
        read_only_fields = fields

    def get_progress(self, job) -> dict:
        return generation.progress_of(job)

    def get_prompts_selected(self, job) -> int | None:
        return None if job.prompt_ids is None else len(job.prompt_ids)

    def get_failures(self, job) -> list[dict]:
        """The first 100 failed requests (the admin page lists more)."""
        failures = job.failures.filter(duplicate=False).select_related("prompt")[:100]
        return GenerationFailureSerializer(failures, many=True).data


class GenerationRequestSerializer(serializers.Serializer):
    endpoint = serializers.IntegerField(help_text="An LLM endpoint enabled for the organization.")
    recipe = serializers.CharField(
        required=False, help_text="A recipe's name; default: the built-in one."
    )
    variants = serializers.JSONField(required=False, help_text="Inline variants instead.")
    prompts = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        allow_empty=False,
        max_length=100_000,
        help_text="Prompt ids; default: every prompt of the project.",
    )


class LLMEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = LLMEndpoint
        # Never the address or the key: a tenant chooses an endpoint, it does not see inside.
        fields = ["id", "name", "model", "max_concurrent_requests"]
        read_only_fields = fields
