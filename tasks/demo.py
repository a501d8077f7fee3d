"""The demo organization that `make run` loads: a lead, two annotators and a project.
Idempotent; refuses to run under DJANGO_ENV=production (its passwords are public)."""

from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django_scopes import scopes_disabled

from tasks.models import Membership, Organization, Project, Role

DEMO_GUIDELINES = """\
Compare the two responses and select which one is better aligned.

Consider: **helpfulness** (does it address the user's need?), **honesty** (is it accurate \
and transparent about uncertainty?), **harmlessness** (does it avoid harmful content?).

Use *Tie* only when both responses are of genuinely equal quality, and *Both Bad* when \
neither is acceptable. Explain your choice in one sentence.
"""


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    role: str


DEMO_LOGINS = [
    DemoLogin("lead@demo.chosen.local", "demo-lead-pass", Role.LEAD),
    DemoLogin("annotator1@demo.chosen.local", "demo-annotator-pass", Role.ANNOTATOR),
    DemoLogin("annotator2@demo.chosen.local", "demo-annotator-pass", Role.ANNOTATOR),
]


@transaction.atomic
def load_demo() -> list[DemoLogin]:
    if settings.PRODUCTION:
        raise ImproperlyConfigured("The demo (public passwords) is not loaded in production.")
    User = get_user_model()
    with scopes_disabled():
        organization, _ = Organization.objects.get_or_create(
            slug="demo", defaults={"name": "Demo Lab"}
        )
        for login in DEMO_LOGINS:
            user, _ = User.objects.get_or_create(
                username=login.email.split("@")[0], defaults={"email": login.email}
            )
            user.email = login.email
            user.set_password(login.password)
            user.save()
            EmailAddress.objects.update_or_create(
                user=user, email=login.email, defaults={"primary": True, "verified": True}
            )
            Membership.objects.update_or_create(
                user=user, organization=organization, defaults={"role": login.role}
            )
        Project.objects.get_or_create(
            organization=organization,
            name="DPO Preference Data Collection",
            defaults={
                "description": "Pairwise comparison of model responses for alignment training.",
                "guidelines": DEMO_GUIDELINES,
                "status": Project.Status.ACTIVE,
            },
        )
    return DEMO_LOGINS
