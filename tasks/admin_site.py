"""The admin site, opened to project leads.

Superusers see every organization (the middleware disables scopes for them under /admin/).
A lead or admin of the current organization may enter too, without Django's is_staff or
model permissions: what they may do is decided by their role in
``tasks.admin.base.OrganizationScopedAdmin``, and what they see by the organization scope.
"""

from functools import wraps

from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.contrib.contenttypes.views import shortcut
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.http import urlencode

# What the admin answers for an object the person cannot open here, whether it does not
# exist or belongs to another organization: the two must not be told apart.
NO_SUCH_OBJECT = "No such object."


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

    def get_urls(self):
        return [
            path(
                "r/<path:content_type_id>/<path:object_id>/",
                self.admin_view(self.view_on_site),
                name="view_on_site",
            )
            if getattr(url, "name", None) == "view_on_site"
            else url
            for url in super().get_urls()
        ]

    def view_on_site(self, request, content_type_id, object_id):
        """Django's "view on site" redirect (``r/<content type>/<id>/``), for an object this
        person can open in this admin only.

        Django's own view looks the object up without the organization scope and answers
        "has no get_absolute_url()" for one that exists but "doesn't exist" for one that
        does not, so with DEBUG on it told whether another organization's id exists. Here
        the object is looked up through its model admin's queryset (the organization's
        rows, for a lead), and any id it does not hold is the same 404 as a missing one.
        """
        try:
            model = ContentType.objects.get_for_id(int(content_type_id)).model_class()
        except (ValueError, OverflowError, ContentType.DoesNotExist):
            model = None
        model_admin = self._registry.get(model)
        if model_admin is None or not model_admin.has_view_or_change_permission(request):
            raise Http404(NO_SUCH_OBJECT)
        try:
            visible = model_admin.get_queryset(request).filter(pk=object_id).exists()
        except (ValueError, TypeError, ValidationError):  # not an id of this model
            visible = False
        if not visible:
            raise Http404(NO_SUCH_OBJECT)
        return shortcut(request, content_type_id, object_id)

    def password_change(self, request, extra_context=None):
        # allauth's page re-authenticates, is rate-limited and notifies the user.
        return redirect("account_change_password")
