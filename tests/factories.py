"""factory_boy factories. Tenant-owned rows are created with scopes disabled: tests set up
several organizations at once, outside any request."""

import functools

import factory
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django_scopes import scopes_disabled

from tasks.models import Membership, Organization, Project, Prompt, Role
from tasks.schema import default_questions
from tasks.services import create_api_token
from tasks.text import content_hash

PASSWORD = "correct horse battery staple"


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once per run, with production's hasher (PBKDF2 with a million
    rounds: half a second each on 2 cores, which made up most of a test's set-up when every
    user hashed it anew). Every factory user can still log in with PASSWORD."""
    return make_password(PASSWORD)


class UnscopedFactory(factory.django.DjangoModelFactory):
    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        with scopes_disabled():
            return super()._create(model_class, *args, **kwargs)


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Organization {n}")
    slug = factory.Sequence(lambda n: f"org-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.LazyFunction(password_hash)

    @factory.post_generation
    def verified_email(self, create, extracted, **kwargs):
        if create:
            self.save()
            EmailAddress.objects.create(user=self, email=self.email, primary=True, verified=True)


class MembershipFactory(UnscopedFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organization = factory.SubFactory(OrganizationFactory)
    role = Role.ANNOTATOR


class ProjectFactory(UnscopedFactory):
    class Meta:
        model = Project

    organization = factory.SubFactory(OrganizationFactory)
    name = factory.Sequence(lambda n: f"Project {n}")
    status = Project.Status.ACTIVE
    guidelines = "Pick the more helpful response."
    mode = Project.Mode.PAIRWISE
    questions = factory.LazyAttribute(lambda project: default_questions(project.mode))


class PromptFactory(UnscopedFactory):
    class Meta:
        model = Prompt

    project = factory.SubFactory(ProjectFactory)
    organization = factory.LazyAttribute(lambda prompt: prompt.project.organization)
    external_id = factory.Sequence(lambda n: f"p{n}")
    text = factory.Sequence(lambda n: f"Question {n}: which answer is better?")
    content_hash = factory.LazyAttribute(lambda prompt: content_hash(prompt.text))


def member(organization, role=Role.ANNOTATOR, **user_fields):
    """A user with the given role in the organization."""
    return MembershipFactory(
        organization=organization, role=role, user=UserFactory(**user_fields)
    ).user


def api_token(organization, name="pipeline"):
    with scopes_disabled():
        return create_api_token(organization=organization, name=name)
