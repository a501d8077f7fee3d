"""The tasks app's models — what gets labelled and who labels it — one module per group
of nouns:

- ``organizations``: Organization (the tenant), Membership and its Role, Invitation,
  ApiToken;
- ``projects``: Project, its question schema and policies;
- ``prompts``: Prompt, Candidate, Item and ItemCandidate (an item's slots);
- ``jobs``: the job lifecycle every background job shares (OrganizationJob), ImportJob;
- ``generation``: LLMEndpoint, GenerationRecipe, GenerationJob, GenerationFailure;
- ``feedback``: FeedbackSignal (a source's signal), SignalPair and KTOExample built from it;
- ``audit``: AuditEvent, the append-only trail.

Everything is importable from ``tasks.models`` as before; the app label and the
migrations do not change.
"""

from tasks.models.audit import AuditEvent, AuditEventQuerySet, AuditTrailIsAppendOnly
from tasks.models.feedback import FeedbackSignal, KTOExample, Rule, SignalPair
from tasks.models.generation import GenerationFailure, GenerationJob, GenerationRecipe, LLMEndpoint
from tasks.models.jobs import ImportJob, JobStatus, OrganizationJob
from tasks.models.organizations import (
    MANAGING_ROLES,
    ApiToken,
    ApiTokenQuerySet,
    Invitation,
    InvitationQuerySet,
    Membership,
    MembershipQuerySet,
    Organization,
    Role,
)
from tasks.models.projects import OPEN_FOR_WORK, Project, ProjectQuerySet
from tasks.models.prompts import Candidate, Item, ItemCandidate, Prompt

__all__ = [
    "MANAGING_ROLES",
    "OPEN_FOR_WORK",
    "ApiToken",
    "ApiTokenQuerySet",
    "AuditEvent",
    "AuditEventQuerySet",
    "AuditTrailIsAppendOnly",
    "Candidate",
    "FeedbackSignal",
    "GenerationFailure",
    "GenerationJob",
    "GenerationRecipe",
    "ImportJob",
    "Invitation",
    "InvitationQuerySet",
    "Item",
    "ItemCandidate",
    "JobStatus",
    "KTOExample",
    "LLMEndpoint",
    "Membership",
    "MembershipQuerySet",
    "Organization",
    "OrganizationJob",
    "Project",
    "ProjectQuerySet",
    "Prompt",
    "Role",
    "Rule",
    "SignalPair",
]
