"""Admin for projects and their imports: the project form, the prompt and Potato import
pages, and the import jobs they start."""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from tasks.admin.base import OrganizationJobAdmin, OrganizationScopedAdmin
from tasks.admin.generation import generate_page
from tasks.admin.question_editor import QuestionEditorForm, template_choices, template_initial
from tasks.importers.feedback import KINDS, FeedbackOptionsInvalid, check_options
from tasks.importers.limits import ImportTooLarge
from tasks.imports import (
    check_config_upload,
    check_data_uploads,
    check_upload_size,
    create_import_job,
    enqueue,
    limit_upload,
    progress_of,
)
from tasks.models import ImportJob, Project


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(d, initial) for d in data]
        return [single(data, initial)] if data else []


class ImportPromptsForm(forms.Form):
    files = MultipleFileField(help_text="JSON (a list of rows), JSONL or CSV; several at once.")
    skip_invalid = forms.BooleanField(
        required=False,
        help_text="Import the valid rows and list the rejected ones. "
        "Without it, any problem stops the import and nothing is written.",
    )
    allow_duplicates = forms.BooleanField(
        required=False,
        help_text="Keep prompts whose text repeats another prompt's (ignoring case, Unicode "
        "form and spacing). Candidates of one prompt are compared as written: only an exact "
        "copy (line endings and trailing whitespace aside) is skipped.",
    )

    def clean_files(self):
        files = check_data_uploads(self.cleaned_data["files"])
        _check_size(files)
        return files


class ImportFeedbackForm(forms.Form):
    """Feedback logs, Open WebUI's feedback export, A/B tests, grades or corrections
    (tasks.importers.feedback describes each format)."""

    files = MultipleFileField(help_text="JSON (a list of rows), JSONL or CSV; several at once.")
    kind = forms.ChoiceField(
        choices=[(k, k.replace("_", " ")) for k in KINDS],
        initial="auto",
        help_text="auto recognises Open WebUI's export, and the others by their columns.",
    )
    scale = forms.CharField(
        required=False,
        max_length=1000,
        help_text="For graded reviews: two numbers (1 5, the default) or the labels from "
        "worst to best, separated by spaces (poor fair good excellent).",
    )
    redact = forms.BooleanField(
        required=False,
        help_text="Replace e-mail addresses and phone numbers in every text before storing it.",
    )
    redact_patterns = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="More regular expressions to replace, one per line (implies redaction).",
    )
    skip_invalid = forms.BooleanField(
        required=False,
        help_text="Import the valid rows and list the rejected ones. "
        "Without it, any problem stops the import and nothing is written.",
    )

    def clean_files(self):
        files = check_data_uploads(self.cleaned_data["files"])
        _check_size(files)
        return files

    def clean(self):
        cleaned = super().clean()
        if "kind" in cleaned:
            try:
                cleaned["options"] = check_options(
                    kind=cleaned["kind"],
                    scale=(cleaned.get("scale") or "").split() or None,
                    redact=cleaned.get("redact", False),
                    redact_patterns=[
                        line
                        for line in (cleaned.get("redact_patterns") or "").splitlines()
                        if line.strip()
                    ],
                )
            except FeedbackOptionsInvalid as exc:
                raise forms.ValidationError(str(exc), code="invalid") from None
        return cleaned


class ImportPotatoForm(forms.Form):
    config = forms.FileField(help_text="Potato config.yaml")
    data = MultipleFileField(required=False, help_text="The files its data_files name.")
    skip_invalid = forms.BooleanField(required=False, help_text="Import the valid rows only.")

    def clean_config(self):
        return check_config_upload(self.cleaned_data["config"])

    def clean_data(self):
        return check_data_uploads(self.cleaned_data["data"])

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("config"):
            _check_size([cleaned["config"], *cleaned.get("data", [])])
        return cleaned


def _check_size(uploads) -> None:
    try:
        check_upload_size(uploads)
    except ImportTooLarge as exc:
        raise forms.ValidationError(str(exc), code="too_large") from None


def _bind_import_form(request, form_class):
    """The import form bound to the request, or a response that ends it (CSRF refused).

    The import views are csrf_exempt so that CsrfViewMiddleware does not read the body
    before ImportUploadLimit is in place; the same CSRF check is made here, after it. An
    upload over the limit is stopped while it arrives and shown as the form's error."""
    limit_upload(request)
    try:
        refused = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
        if refused is not None:
            return None, refused
        form = form_class(request.POST or None, request.FILES or None)
    except ImportTooLarge as exc:
        # The body was not read to its end, so there is nothing to bind: an empty form
        # carrying the refusal (add_error needs a cleaned form).
        form = form_class()
        form.errors[forms.forms.NON_FIELD_ERRORS] = form.error_class(
            [str(exc)], error_class="nonfield"
        )
    return form, None


PROJECT_FIELDSETS = [
    (None, {"fields": ["organization", "name", "status", "description", "guidelines"]}),
    (
        "Comparison and questions",
        {"fields": ["mode", "questions", "html_layout", "pairs_per_prompt"]},
    ),
    (
        "Overlap and workload",
        {
            "fields": [
                "annotations_per_item",
                "agreement_sample_percent",
                "agreement_sample_annotations",
                "quota_per_annotator",
                "assignment_timeout_minutes",
                "annotator_access",
                "annotators",
                "allocation_policy",
                "active_random_percent",
            ]
        },
    ),
    (
        "Skipping and reasoning",
        {
            "fields": [
                "allow_skip",
                "skip_reason_required",
                "reasoning_required",
                "reasoning_min_length",
            ]
        },
    ),
    (
        "Quality control",
        {"fields": ["gold_rate_percent", "discussion_visible_to_annotators"]},
    ),
    (
        "Pairs from feedback logs, A/B tests and reviews",
        {"classes": ["collapse"], "fields": ["pair_settings"]},
    ),
    (
        "Imported data",
        {
            "classes": ["collapse"],
            "fields": [
                "id_key",
                "text_key",
                "candidate_fields",
                "import_warnings",
            ],
        },
    ),
]


class ProjectForm(QuestionEditorForm):
    # Optional in a post: one that leaves them out (made before they existed) keeps the
    # model's defaults, the plain least-covered order.
    allocation_policy = forms.ChoiceField(
        choices=Project.AllocationPolicy.choices,
        required=False,
        initial=Project.AllocationPolicy.LEAST_COVERED,
        help_text=Project._meta.get_field("allocation_policy").help_text,
    )
    active_random_percent = forms.IntegerField(
        min_value=0,
        max_value=100,
        required=False,
        initial=20,
        help_text=Project._meta.get_field("active_random_percent").help_text,
    )

    def clean_allocation_policy(self):
        return self.cleaned_data["allocation_policy"] or Project.AllocationPolicy.LEAST_COVERED

    def clean_active_random_percent(self):
        value = self.cleaned_data["active_random_percent"]
        return 20 if value is None else value

    class Meta:
        model = Project
        # What the lead edits (import_warnings is shown read-only, source_config not at all).
        fields = [
            f for _, opts in PROJECT_FIELDSETS for f in opts["fields"] if f != "import_warnings"
        ]


@admin.register(Project)
class ProjectAdmin(OrganizationScopedAdmin):
    form = ProjectForm
    list_display = ["name", "status", "mode", "prompt_count", "updated_at"]
    list_filter = ["status", "mode"]
    search_fields = ["name", "description"]
    readonly_fields = ["import_warnings"]
    filter_horizontal = ["annotators"]
    change_form_template = "admin/tasks/project/change_form.html"
    change_list_template = "admin/tasks/project/change_list.html"
    fieldsets = PROJECT_FIELDSETS

    actions = ["generate_candidates"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_prompts=Count("prompts"))

    def get_fieldsets(self, request, obj=None):
        """The confirmation of a schema change, right under the questions, for a project
        that has judgments (see QuestionEditorForm)."""
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or not obj.judgments.exists():
            return fieldsets
        return [
            (
                title,
                {
                    **opts,
                    "fields": [
                        g
                        for f in opts["fields"]
                        for g in ([f, "confirm_schema_change"] if f == "questions" else [f])
                    ],
                },
            )
            for title, opts in fieldsets
        ]

    def get_changeform_initial_data(self, request):
        """A new project from the template chosen on the Add page (``?template=<key>``)."""
        return {
            **super().get_changeform_initial_data(request),
            **template_initial(request.GET.get("template")),
        }

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context.update(
            project_templates=template_choices() if add else [],
            chosen_template=request.GET.get("template", ""),
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description="Generate candidates with a local LLM")
    def generate_candidates(self, request, queryset):
        return generate_page(self, request, queryset, dict.fromkeys(queryset))

    @admin.display(description="Prompts", ordering="_prompts")
    def prompt_count(self, obj):
        return obj._prompts

    def get_urls(self):
        own = [
            path(
                "<int:object_id>/import/",
                self.admin_site.admin_view(self.import_prompts_view),
                name="tasks_project_import",
            ),
            path(
                "<int:object_id>/import-feedback/",
                self.admin_site.admin_view(self.import_feedback_view),
                name="tasks_project_import_feedback",
            ),
            path(
                "import-potato/",
                self.admin_site.admin_view(self.import_potato_view),
                name="tasks_project_import_potato",
            ),
        ]
        return own + super().get_urls()

    def import_prompts_view(self, request, object_id):
        return self._import_view(
            request, object_id, ImportPromptsForm, ImportJob.Kind.PROMPTS, "Import prompts into"
        )

    def import_feedback_view(self, request, object_id):
        return self._import_view(
            request, object_id, ImportFeedbackForm, ImportJob.Kind.FEEDBACK, "Import feedback into"
        )

    def _import_view(self, request, object_id, form_class, kind, title: str):
        """The upload page of a prompt or feedback import: the form, then a job and its page.
        The two forms differ only in their own option (``allow_duplicates`` / ``options``)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        project = self.get_object(request, object_id)
        form, refused = _bind_import_form(request, form_class)
        if refused:
            return refused
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            job = create_import_job(
                organization=project.organization,
                kind=kind,
                project=project,
                uploads=data["files"],
                skip_invalid=data["skip_invalid"],
                created_by=request.user,
                **{key: data[key] for key in ("allow_duplicates", "options") if key in data},
            )
            enqueue(job)
            return redirect("admin:tasks_importjob_change", job.pk)
        return self._upload_page(request, form, f"{title} {project.name}", project)

    def import_potato_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form, refused = _bind_import_form(request, ImportPotatoForm)
        if refused:
            return refused
        if form.is_bound and form.is_valid():
            if request.user.is_superuser and request.organization is None:
                raise PermissionDenied("Choose an organization first.")
            job = create_import_job(
                organization=request.organization,
                kind=ImportJob.Kind.POTATO,
                uploads=[form.cleaned_data["config"], *form.cleaned_data["data"]],
                skip_invalid=form.cleaned_data["skip_invalid"],
                created_by=request.user,
            )
            enqueue(job)
            return redirect("admin:tasks_importjob_change", job.pk)
        return self._upload_page(request, form, "Import a Potato config", None)

    import_prompts_view.csrf_exempt = True  # checked in _bind_import_form, see there
    import_potato_view.csrf_exempt = True
    import_feedback_view.csrf_exempt = True

    def _upload_page(self, request, form, title, project):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "form": form,
            "project": project,
        }
        return TemplateResponse(request, "admin/tasks/project/import_form.html", context)


@admin.register(ImportJob)
class ImportJobAdmin(OrganizationJobAdmin):
    """Jobs start from a project's Import button or the API."""

    list_display = ["__str__", "project", "state", "created_by", "created_at", "finished_at"]
    list_filter = ["status", "kind"]
    change_form_template = "admin/tasks/importjob/change_form.html"
    fields = ["kind", "project", "state", "created_by", "created_at", "started_at", "finished_at"]
    readonly_fields = fields

    def render_change_form(self, request, context, *args, **kwargs):
        job = context.get("original")
        if job is not None:
            context.update(job=job, progress=progress_of(job), summary=job.report)
        return super().render_change_form(request, context, *args, **kwargs)
