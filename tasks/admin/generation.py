"""Admin for candidate generation: endpoints (superusers), recipes, jobs, and the
"Generate candidates" actions on projects and prompts."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import re_path, reverse
from django.utils.text import Truncator

from tasks import generation, llm
from tasks.admin.base import OrganizationJobAdmin, OrganizationScopedAdmin
from tasks.feedback.rules import MAX_RULES, rules_recipe
from tasks.models import GenerationJob, GenerationRecipe, LLMEndpoint, Project, Prompt


class LLMEndpointForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Sent as a bearer token. Never shown again; leave empty to keep the one stored.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = LLMEndpoint
        fields = [
            "name",
            "base_url",
            "model",
            "api_key",
            "clear_api_key",
            "timeout_seconds",
            "max_concurrent_requests",
            "enabled",
            "all_organizations",
            "organizations",
        ]

    def clean_base_url(self):
        try:
            return llm.check_base_url(self.cleaned_data["base_url"])
        except ValueError as error:
            raise ValidationError(str(error)) from None

    def clean_timeout_seconds(self):
        value = self.cleaned_data["timeout_seconds"]
        if not 1 <= value <= 3600:
            raise ValidationError("Between 1 and 3600 seconds.")
        return value

    def clean_max_concurrent_requests(self):
        value = self.cleaned_data["max_concurrent_requests"]
        if not 1 <= value <= 64:
            raise ValidationError("Between 1 and 64.")
        return value

    def save(self, commit=True):
        endpoint = super().save(commit=False)
        new_key = self.cleaned_data.get("api_key")
        if self.cleaned_data.get("clear_api_key"):
            endpoint.api_key = ""
        elif not new_key and self.instance.pk:
            endpoint.api_key = LLMEndpoint.objects.get(pk=self.instance.pk).api_key
        if commit:
            endpoint.save()
            self.save_m2m()
        return endpoint


@admin.register(LLMEndpoint)
class LLMEndpointAdmin(admin.ModelAdmin):
    """Only superusers point Chosen at servers; organizations pick among these."""

    form = LLMEndpointForm
    list_display = ["name", "base_url", "model", "max_concurrent_requests", "enabled"]
    filter_horizontal = ["organizations"]
    actions = ["test_connection"]

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser

    @admin.action(description="Test connection (list the server's models)")
    def test_connection(self, request, queryset):
        for endpoint in queryset:
            try:
                models = llm.list_models(endpoint)
            except llm.GenerationError as error:
                self.message_user(request, f"{endpoint.name}: {error}", messages.ERROR)
                continue
            found = "" if endpoint.model in models else f" ({endpoint.model} is not among them)"
            level = messages.SUCCESS if not found else messages.WARNING
            listing = ", ".join(models) or "none"
            self.message_user(request, f"{endpoint.name}: models {listing}{found}", level)


class GenerationRecipeForm(forms.ModelForm):
    variants = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90, "class": "vLargeTextField"}),
        help_text='A list of {"name", "system_prompt", "temperature", "top_p", '
        '"max_tokens", "seed"}; one request per variant and prompt.',
    )

    class Meta:
        model = GenerationRecipe
        fields = ["organization", "name", "variants"]

    def clean_name(self):
        name = self.cleaned_data["name"]
        if name == generation.DEFAULT_RECIPE_NAME:
            raise ValidationError("This is the built-in recipe's name; choose another.")
        return name

    def clean_variants(self):
        return generation.validate_variants(self.cleaned_data["variants"])


class RulesRecipeForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="An existing recipe of this name is updated.")
    rules = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 10, "cols": 90, "class": "vLargeTextField"}),
        help_text=f"One rule per line (1 to {MAX_RULES}, at most 500 characters each), e.g. "
        "“Never promise delivery dates”. Blank lines are skipped.",
    )
    temperature = forms.FloatField(required=False, min_value=0, max_value=2, initial=0.7)
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=32_768, initial=512)


@admin.register(GenerationRecipe)
class GenerationRecipeAdmin(OrganizationScopedAdmin):
    form = GenerationRecipeForm
    list_display = ["name", "variant_count", "created_at"]
    change_list_template = "admin/tasks/generationrecipe/change_list.html"

    @admin.display(description="Variants")
    def variant_count(self, obj):
        return len(obj.variants)

    def get_urls(self):
        return [
            re_path(
                r"^add-from-rules/$",
                self.admin_site.admin_view(self.add_from_rules),
                name="tasks_generationrecipe_add_from_rules",
            ),
            *super().get_urls(),
        ]

    def add_from_rules(self, request):
        """A recipe from style and compliance rules (tasks.feedback.rules): leads and
        admins, in their current organization."""
        if not self._may_manage(request) or request.organization is None:
            raise PermissionDenied
        form = RulesRecipeForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            data = form.cleaned_data
            base = {k: data[k] for k in ("temperature", "max_tokens") if data[k] is not None}
            rules = [line for line in data["rules"].splitlines() if line.strip()]
            try:
                recipe = rules_recipe(
                    organization=request.organization, name=data["name"], rules=rules, base=base
                )
            except ValidationError as error:
                form.add_error("rules", error)
            else:
                self.message_user(
                    request,
                    f"Recipe {recipe.name!r}: one variant follows all {len(rules)} rules, one "
                    "per rule breaks it. Run it with Generate candidates.",
                    messages.SUCCESS,
                )
                return redirect("admin:tasks_generationrecipe_change", recipe.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Add a recipe from style rules",
            "form": form,
        }
        return TemplateResponse(request, "admin/tasks/generationrecipe/rules_form.html", context)


class GenerateForm(forms.Form):
    endpoint = forms.ModelChoiceField(queryset=LLMEndpoint.objects.none())
    recipe = forms.ChoiceField()

    def __init__(self, organization, *args, **kwargs):
        super().__init__(*args, **kwargs)
        recipes = generation.recipes_for(organization)
        self.fields["endpoint"].queryset = LLMEndpoint.for_organization(organization)
        self.fields["recipe"].choices = [
            (name, f"{name} ({len(variants)} variants)") for name, variants in recipes.items()
        ]


def generate_page(model_admin, request, queryset, groups: dict[Project, list[int] | None]):
    """The intermediate page of the generate actions; on submit, one job per project."""
    if not model_admin._may_manage(request) or request.organization is None:
        raise PermissionDenied
    form = GenerateForm(request.organization, request.POST if "apply" in request.POST else None)
    if form.is_valid():
        jobs = []
        try:
            for project, prompt_ids in groups.items():
                job = generation.request_generation(
                    project=project,
                    endpoint_id=form.cleaned_data["endpoint"].pk,
                    recipe=form.cleaned_data["recipe"],
                    prompt_ids=prompt_ids,
                    created_by=request.user,
                )
                jobs.append(job)
        except ValidationError as error:
            model_admin.message_user(request, "; ".join(error.messages), messages.ERROR)
            return None
        if len(jobs) == 1:
            return redirect("admin:tasks_generationjob_change", jobs[0].pk)
        model_admin.message_user(request, f"{len(jobs)} generation jobs started.")
        return redirect("admin:tasks_generationjob_changelist")
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Generate candidates",
        "form": form,
        "groups": groups,
        "queryset": queryset,
        "action": request.POST.get("action"),
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        "no_endpoint": not form.fields["endpoint"].queryset.exists(),
    }
    return TemplateResponse(request, "admin/tasks/generate_form.html", context)


@admin.register(Prompt)
class PromptAdmin(OrganizationScopedAdmin):
    list_display = ["external_id", "excerpt", "project", "candidate_count", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id", "text"]
    list_select_related = ["project"]
    actions = ["generate"]
    fields = ["project", "external_id", "text", "messages", "metadata", "source", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_candidates=Count("candidates"))

    @admin.display(description="Prompt")
    def excerpt(self, obj):
        return Truncator(obj.text).chars(90)

    @admin.display(description="Candidates", ordering="_candidates")
    def candidate_count(self, obj):
        return obj._candidates

    def has_add_permission(self, request):
        return False  # prompts come from imports

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Generate candidates for the selected prompts")
    def generate(self, request, queryset):
        groups: dict[Project, list[int]] = {}
        for prompt in queryset.select_related("project"):
            groups.setdefault(prompt.project, []).append(prompt.pk)
        return generate_page(self, request, queryset, groups)


@admin.register(GenerationJob)
class GenerationJobAdmin(OrganizationJobAdmin):
    """Jobs start from projects or prompts (actions) or the API."""

    list_display = ["__str__", "project", "state", "done", "failed", "total", "created_at"]
    list_filter = ["status"]
    list_select_related = ["project"]
    change_form_template = "admin/tasks/generationjob/change_form.html"
    fields = [
        "project",
        "endpoint",
        "model",
        "recipe_name",
        "state",
        "total",
        "done",
        "failed",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    readonly_fields = fields
    actions = ["cancel_jobs", "resume_jobs"]

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request, queryset):
        for job in queryset:
            generation.cancel(job)
        self.message_user(request, f"{len(queryset)} job(s) cancelled or cancelling.")

    @admin.action(description="Resume the selected jobs (after a worker died)")
    def resume_jobs(self, request, queryset):
        resumed = sum(generation.resume(job) for job in queryset)
        self.message_user(request, f"{resumed} unfinished job(s) resumed.")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # its candidates point at it in their parameters

    def get_urls(self):
        return [
            re_path(
                r"^(?P<object_id>\d+)/(?P<verb>cancel|resume)/$",
                self.admin_site.admin_view(self.control_view),
                name="tasks_generationjob_control",
            ),
            *super().get_urls(),
        ]

    def control_view(self, request, object_id, verb):
        """Cancel or resume (POST only)."""
        if request.method != "POST":
            raise PermissionDenied
        if not self._may_manage(request):
            raise PermissionDenied
        job = self.get_object(request, object_id)
        if verb == "cancel":
            generation.cancel(job)
            self.message_user(request, "Cancelling: requests in flight finish, no new ones.")
        elif generation.resume(job):
            self.message_user(request, "Resumed: only the missing candidates are requested.")
        return redirect(reverse("admin:tasks_generationjob_change", args=[job.pk]))

    def render_change_form(self, request, context, *args, **kwargs):
        job = context.get("original")
        if job is not None:
            context.update(
                job=job,
                progress=generation.progress_of(job),
                failures=job.failures.select_related("prompt")[:200],
            )
        return super().render_change_form(request, context, *args, **kwargs)
