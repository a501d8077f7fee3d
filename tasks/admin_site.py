"""The admin site, opened to project leads.

Superusers see every organization (the middleware disables scopes for them under /admin/).
A lead or admin of the current organization may enter too, without Django's is_staff or
model permissions: what they may do is decided by their role in
``tasks.admin.base.OrganizationScopedAdmin``, and what they see by the organization scope.
"""

from functools import wraps

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode


def manages_current_organization(request) -> bool:
    membership = getattr(request, "membership", None)
    return membership is not None and membership.manages


class OrganizationAdminSite(admin.AdminSite):
    site_header = "Chosen administration"
    site_title = "Chosen admin"
    index_title = "Projects, people and tokens"

    def has_permission(self, request) -> bool:
        user = request.user
        return user.is_active and (user.is_superuser or manages_current_organization(request))

    def admin_view(self, view, cacheable=False):
        wrapped = super().admin_view(view, cacheable)

        @wraps(wrapped)
        def inner(request, *args, **kwargs):
            # Django sends a logged-in user without access to the admin's log-in form;
            # here they get a plain "forbidden" instead.
            if request.user.is_authenticated and not self.has_permission(request):
                raise PermissionDenied("Only project leads and admins of this organization.")
            return wrapped(request, *args, **kwargs)

        inner.admin_site = self
        return inner

    def login(self, request, extra_context=None):
        """One log-in for everyone: allauth's (rate-limited, with two-factor)."""
        if request.user.is_authenticated:
            # Logged in but not a lead here: sending them to the log-in page would loop.
            raise PermissionDenied("Only project leads and admins of this organization.")
        next_url = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        return redirect(f"{reverse('account_login')}?{urlencode({'next': next_url})}")

    def logout(self, request, extra_context=None):
        return redirect("account_logout")

    def password_change(self, request, extra_context=None):
        # allauth's page re-authenticates, is rate-limited and notifies the user.
        return redirect("account_change_password")
