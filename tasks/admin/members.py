"""Admin for an organization and who acts in it: organizations (superusers), members with
their roles, the invitations that make members (added here, answered by the person on
their invitations page), and API tokens."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from tasks import services
from tasks.admin.base import OrganizationScopedAdmin
from tasks.models import ApiToken, Invitation, Membership, Organization, Role


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name", "slug"]
    # Organizations are created by superusers only; leads see theirs in the header.


class AddMemberForm(forms.ModelForm):
    email = forms.EmailField(
        help_text="The person is invited by e-mail and becomes a member when they accept "
        "(a new address first gets an account and chooses a password). Adding a person "
        "whose invitation is still waiting sends it again."
    )
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
    # The member list, followed by the invitations still waiting for an answer.
    change_list_template = "tasks/membership_change_list.html"

    # The same words whatever the selected people did: whether someone has set a password
    # or logged in is theirs to know, not the organization's.
    RESENT = (
        "Each selected member who has not chosen a password yet was sent a new link. "
        "To remind someone invited, add them again."
    )

    @admin.action(description="Send a new set-password link (members without a password)")
    def resend_invitation(self, request, queryset):
        services.resend_invitations(memberships=queryset, base_url=request.build_absolute_uri("/"))
        self.message_user(request, self.RESENT, messages.SUCCESS)

    def get_urls(self):
        withdraw = self.admin_site.admin_view(self.withdraw_invitation_view)
        return [
            path("invitations/<int:pk>/withdraw/", withdraw, name="tasks_invitation_withdraw"),
            *super().get_urls(),
        ]

    def withdraw_invitation_view(self, request, pk: int):
        """POST only; another organization's invitation, or one already answered, is a 404."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        invitation = Invitation.objects.pending().select_related("user").filter(pk=pk).first()
        if invitation is None:
            raise Http404("No such invitation.")
        services.withdraw_invitation(
            invitation=invitation,
            actor_membership=request.membership,
            superuser=request.user.is_superuser,
        )
        self.message_user(
            request, f"The invitation of {invitation.user.email} is withdrawn.", messages.SUCCESS
        )
        return redirect("admin:tasks_membership_changelist")

    def changelist_view(self, request, extra_context=None):
        waiting = Invitation.objects.pending().select_related("user", "organization", "invited_by")
        extra_context = {**(extra_context or {}), "waiting_invitations": waiting}
        return super().changelist_view(request, extra_context)

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
        # A membership this person may only view (a lead opening an admin's) has no role
        # field: the admin shows it read-only.
        if "role" in form.base_fields:
            allowed = services.grantable_roles(
                request.membership, superuser=request.user.is_superuser
            )
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
        # Adding makes an invitation, not a membership: the person joins by accepting.
        email = form.cleaned_data["email"]
        services.invite_member(
            organization=form.cleaned_data["organization"],
            email=email,
            role=role,
            invited_by=request.user,
            first_name=form.cleaned_data["first_name"],
            last_name=form.cleaned_data["last_name"],
            base_url=request.build_absolute_uri("/"),
        )
        # The same words whether or not the address had an account (nothing to probe).
        messages.info(
            request,
            f"{email} was invited by e-mail and becomes a member on accepting. A person "
            "without an account first chooses a password.",
        )

    def log_addition(self, request, obj, message):
        if obj.pk is not None:  # an invitation adds no membership yet (the trail has it)
            return super().log_addition(request, obj, message)
        return None

    def response_add(self, request, obj, post_url_continue=None):
        if obj.pk is not None:
            return super().response_add(request, obj, post_url_continue)
        if "_addanother" in request.POST:
            return redirect("admin:tasks_membership_add")
        return redirect("admin:tasks_membership_changelist")

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
