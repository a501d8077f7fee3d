"""The tasks app's admin, one module per concern:

- ``base``: OrganizationScopedAdmin (the organization scope every tenant-owned model's
  admin keeps to) and OrganizationJobAdmin (background jobs), with the people pickers'
  helpers. Other apps' admins derive from these: import them from ``tasks.admin.base``.
- ``projects``: projects, the prompt and Potato import pages, import jobs.
- ``members``: organizations (superusers), members and their invitations, API tokens.
- ``audit``: the audit trail, read-only.
- ``feedback``: what the pair builder made from feedback signals (pairs, KTO rows), read-only.
- ``generation``: candidate generation: LLM endpoints (superusers), recipes, prompts, the
  "Generate candidates" page of the project and prompt actions, generation jobs.

Django's admin autodiscovery imports this package; importing the modules registers their
admins. The modules import from ``tasks.admin.base``, never from this package.
"""

from tasks.admin import audit, base, feedback, generation, members, projects

__all__ = ["audit", "base", "feedback", "generation", "members", "projects"]
