"""The demo organization that `make run` loads: a lead, three annotators, the seed's DPO
project (its Potato config with ten sample items, left fresh for annotating) and a finished
study (project/demo/study.py: judged, reviewed, with a QC report and an export) and a
project of pairs built from chat feedback logs, waiting for experts (project/demo/feedback.py).
Idempotent; refuses to run under DJANGO_ENV=production (its passwords are public)."""

from dataclasses import dataclass
from pathlib import Path

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django_scopes import scope, scopes_disabled

# The projects' names are the demo's names, with the log-ins: importable from here.
from project.demo.feedback import FEEDBACK_PROJECT_NAME as FEEDBACK_PROJECT_NAME
from project.demo.feedback import build_feedback_project
from project.demo.study import STUDY_PROJECT_NAME as STUDY_PROJECT_NAME
from project.demo.study import build_study
from tasks.importers.potato import import_potato_project
from tasks.models import Membership, Organization, Role

SEED_PROJECT = Path(__file__).resolve().parent / "data" / "dpo-preference" / "config.yaml"


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    role: str


DEMO_LOGINS = [
    DemoLogin("lead@demo.chosen.local", "demo-lead-pass", Role.LEAD),
    DemoLogin("annotator1@demo.chosen.local", "demo-annotator-pass", Role.ANNOTATOR),
    DemoLogin("annotator2@demo.chosen.local", "demo-annotator-pass", Role.ANNOTATOR),
    DemoLogin("annotator3@demo.chosen.local", "demo-annotator-pass", Role.ANNOTATOR),
]


@transaction.atomic
def load_demo() -> list[DemoLogin]:
    if settings.PRODUCTION:
        raise ImproperlyConfigured("The demo (public passwords) is not loaded in production.")
    User = get_user_model()
    users = {}
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
            users[login.email] = user
            EmailAddress.objects.update_or_create(
                user=user, email=login.email, defaults={"primary": True, "verified": True}
            )
            Membership.objects.update_or_create(
                user=user, organization=organization, defaults={"role": login.role}
            )
    # The seed's Potato config and its ten sample items, imported as a lead would.
    with scope(organization=organization):
        import_potato_project(
            organization=organization,
            config_text=SEED_PROJECT.read_text(encoding="utf-8"),
            config_name=SEED_PROJECT.name,
            base_dir=SEED_PROJECT.parent,
        )
        # The finished study, judged by the annotators; the lead marks gold and decides.
        by_role = {role: [users[x.email] for x in DEMO_LOGINS if x.role == role] for role in Role}
        build_study(
            organization=organization,
            lead=by_role[Role.LEAD][0],
            annotators=by_role[Role.ANNOTATOR],
        )
    build_feedback_project(organization=organization)
    return DEMO_LOGINS
