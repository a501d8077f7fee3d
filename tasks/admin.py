from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from tasks import services
from tasks.admin_site import manages_current_organization
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
from tasks.models import (
    ApiToken,
    AuditEvent,
    ImportJob,
    Membership,
    Organization,
    Project,
    Role,
)

User = get_user_model()


class OrganizationScopedAdmin(admin.ModelAdmin):
    """The base of every admin for a tenant-owned model.

    Rows come through the model's scoped manager, so a lead sees only the current
    organization's; foreign-key pickers offer only that organization's objects (and its
    members for user fields); the organization field is fixed to the current one. Leads and
    admins of the organization may view and edit; nobody else.
    """

    def _may_manage(self, request) -> bool:
        return request.user.is_superuser or manages_current_organization(request)

    def has_module_permission(self, request) -> bool:
        return self._may_manage(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._may_manage(request)

    def has_add_permission(self, request) -> bool:
        return self._may_manage(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may_manage(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may_manage(request)

    def get_object(self, request, object_id, from_field=None):
        # Django redirects to the index for a missing object; another organization's id
        # must look exactly like one that does not exist: a 404.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        if request.user.is_superuser and "organization" not in columns:
            columns.append("organization")
        return columns

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if request.user.is_superuser:
            filters.append("organization")
        return filters

    # What Django's own list filters and date hierarchy put after a field's path.
    FILTER_TAILS = frozenset({"exact", "isnull", "gte", "lt", "id__exact", "year", "month", "day"})

    def lookup_allowed(self, lookup, value, request) -> bool:
        """Only the lookups this list's filters and date hierarchy make.

        Django's default accepts any lookup on the model's own fields, so a lead could
        filter API tokens by ?key_digest__startswith=… and learn a digest a character at a
        time (CVE-2023-47117); a lookup the page does not offer is a 400 (Django's
        DisallowedModelAdminLookup), whatever its value."""
        paths = [self.date_hierarchy] if self.date_hierarchy else []
        for item in self.get_list_filter(request):
            if isinstance(item, str):
                paths.append(item)
            elif isinstance(item, (tuple, list)):
                paths.append(item[0])
            elif lookup == getattr(item, "parameter_name", None):
                return True
        return any(
            lookup == path
            or (lookup.startswith(f"{path}__") and lookup[len(path) + 2 :] in self.FILTER_TAILS)
            for path in paths
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not request.user.is_superuser:
            if db_field.related_model is Organization:
                kwargs["queryset"] = Organization.objects.filter(pk=request.organization.pk)
                kwargs["initial"] = request.organization
                kwargs["disabled"] = True
            elif db_field.related_model is User:
                kwargs["queryset"] = _members_of(request.organization)
        return _by_email(super().formfield_for_foreignkey(db_field, request, **kwargs))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if not request.user.is_superuser and db_field.related_model is User:
            kwargs["queryset"] = _members_of(request.organization)
        return _by_email(super().formfield_for_manytomany(db_field, request, **kwargs))


class OrganizationJobAdmin(OrganizationScopedAdmin):
    """The base of the admins of background jobs (tasks.models.OrganizationJob). Jobs are
    started from their pages or the API, not added or edited here; a failed one reads
    "Failed: <reason>" in the list and on its page, never just "failed"."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Status", ordering="status")
    def state(self, job) -> str:
        return job.failure or job.get_status_display()


def _by_email(field):
    """People are known by their e-mail address in Chosen, not by a username."""
    queryset = getattr(field, "queryset", None)
    if queryset is not None and queryset.model is User:
        field.label_from_instance = lambda user: (
            f"{user.get_full_name()} <{user.email}>" if user.get_full_name() else user.email
        )
    return field


def _members_of(organization):
    return User.objects.filter(memberships__organization=organization).order_by("email")


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    # Organizations are created by superusers only; leads see theirs in the header.


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


class ProjectForm(forms.ModelForm):
    questions = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90, "class": "vLargeTextField"}),
        help_text="The question schema as JSON. Empty: the default for the mode.",
    )

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

    @admin.action(description="Generate candidates with a local LLM")
    def generate_candidates(self, request, queryset):
        from tasks.admin_generation import generate_page

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
                "import-potato/",
                self.admin_site.admin_view(self.import_potato_view),
                name="tasks_project_import_potato",
            ),
        ]
        return own + super().get_urls()

    def import_prompts_view(self, request, object_id):
        if not self.has_change_permission(request):
            raise PermissionDenied
        project = self.get_object(request, object_id)
        form, refused = _bind_import_form(request, ImportPromptsForm)
        if refused:
            return refused
        if form.is_bound and form.is_valid():
            job = create_import_job(
                organization=project.organization,
                kind=ImportJob.Kind.PROMPTS,
                project=project,
                uploads=form.cleaned_data["files"],
                skip_invalid=form.cleaned_data["skip_invalid"],
                allow_duplicates=form.cleaned_data["allow_duplicates"],
                created_by=request.user,
            )
            enqueue(job)
            return redirect("admin:tasks_importjob_change", job.pk)
        return self._upload_page(request, form, f"Import prompts into {project.name}", project)

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


class AddMemberForm(forms.ModelForm):
    email = forms.EmailField(help_text="A new address gets an account and an invitation e-mail.")
    first_name = forms.CharField(required=False)
    last_name = forms.CharField(required=False)

    class Meta:
        model = Membership
        fields = ["organization", "email", "first_name", "last_name", "role"]

    def clean_email(self):
        email = self.cleaned_data["email"]
        organization = self.cleaned_data.get("organization") or self.initial.get("organization")
        if (
            organization
            and Membership.objects.with_scopes_disabled()
            .filter(organization=organization, user__email__iexact=email)
            .exists()
        ):
            raise forms.ValidationError("This person is already a member.")
        return email


@admin.register(Membership)
class MembershipAdmin(OrganizationScopedAdmin):
    list_display = ["user_email", "user_name", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "user__first_name", "user__last_name"]
    list_select_related = ["user", "organization"]
    actions = ["resend_invitation"]

    @admin.action(description="Send a new set-password link (members who never logged in)")
    def resend_invitation(self, request, queryset):
        sent = services.resend_invitations(
            memberships=queryset, base_url=request.build_absolute_uri("/")
        )
        self.message_user(request, f"{sent} link(s) sent.", messages.SUCCESS)

    @admin.display(description="E-mail", ordering="user__email")
    def user_email(self, obj):
        return obj.user.email

    @admin.display(description="Name")
    def user_name(self, obj):
        return obj.user.get_full_name()

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = AddMemberForm
        else:
            kwargs["fields"] = ["role"]
        form = super().get_form(request, obj, change, **kwargs)
        allowed = services.grantable_roles(request.membership, superuser=request.user.is_superuser)
        form.base_fields["role"].choices = [c for c in Role.choices if c[0] in allowed]
        return form

    def get_readonly_fields(self, request, obj=None):
        return ["user", "organization"] if obj else []

    def _touches_admin(self, request, obj) -> bool:
        return (
            obj is not None
            and obj.role == Role.ADMIN
            and Role.ADMIN
            not in services.grantable_roles(request.membership, superuser=request.user.is_superuser)
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and not self._touches_admin(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and not self._touches_admin(request, obj)

    def save_model(self, request, obj, form, change):
        role = form.cleaned_data["role"]
        services.check_may_grant(
            actor_membership=request.membership, superuser=request.user.is_superuser, role=role
        )
        if change:
            obj.save()
            return
        membership, _ = services.add_member(
            organization=form.cleaned_data["organization"],
            email=form.cleaned_data["email"],
            role=role,
            first_name=form.cleaned_data["first_name"],
            last_name=form.cleaned_data["last_name"],
            base_url=request.build_absolute_uri("/"),
        )
        form.instance = membership
        obj.pk, obj.user, obj.organization = membership.pk, membership.user, membership.organization
        # The same words whether or not the address had an account (nothing to probe).
        messages.info(
            request,
            f"{obj.user.email} was added. A person without an account receives an e-mail "
            "to set a password.",
        )

    def delete_queryset(self, request, queryset):
        if any(self._touches_admin(request, m) for m in queryset):
            raise PermissionDenied("Only admins may remove admins.")
        super().delete_queryset(request, queryset)


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["organization", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(OrganizationScopedAdmin):
    form = ApiTokenForm
    list_display = ["name", "key_prefix", "status", "created_by", "created_at", "last_used_at"]
    search_fields = ["name", "key_prefix"]
    actions = ["revoke"]

    @admin.display(description="Status")
    def status(self, obj):
        return "active" if obj.is_active else f"revoked {obj.revoked_at:%Y-%m-%d %H:%M}"

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "name"]
        return [
            "organization",
            "name",
            "key_prefix",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [
            "organization",
            "key_prefix",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the row records who made it and when it was last used

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name"])
            return
        token, raw_key = services.create_api_token(
            organization=form.cleaned_data["organization"],
            name=form.cleaned_data["name"],
            created_by=request.user,
        )
        obj.pk = token.pk
        request._chosen_new_token = raw_key

    def response_add(self, request, obj, post_url_continue=None):
        # The secret is shown on this one response and stored nowhere (not even in a
        # message cookie).
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "token": obj,
            "raw_key": request._chosen_new_token,
            "title": "Copy your new API token",
        }
        return TemplateResponse(request, "admin/tasks/apitoken/created.html", context)

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        count = services.revoke_api_tokens(tokens=queryset)
        self.message_user(request, f"{count} token(s) revoked.", messages.SUCCESS)


@admin.register(AuditEvent)
class AuditEventAdmin(OrganizationScopedAdmin):
    """The trail, read-only for everyone (superusers included): no add, change or delete,
    no bulk action. Leads read their organization's; the full page with filters and
    downloads is /audit/."""

    list_display = ["at", "actor_label", "action", "object_type", "object_id", "object_repr", "ip"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor_label", "object_repr", "object_id"]
    date_hierarchy = "at"
    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# Candidate generation's admin (endpoints, recipes, jobs, prompts) registers itself.
from tasks import admin_generation  # noqa: E402, F401
