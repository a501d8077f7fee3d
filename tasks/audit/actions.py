"""The catalogue of audit actions: each one's code (stored in ``AuditEvent.action``) and the
words a lead reads."""


class Action:
    """Every action the trail knows, with the words a lead reads."""

    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    LOGIN_FAILED = "auth.login_failed"
    MEMBER_ADDED = "member.added"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    PROJECT_CREATED = "project.created"
    PROJECT_UPDATED = "project.updated"
    PROJECT_SCHEMA_CHANGED = "project.schema_changed"
    PROJECT_DELETED = "project.deleted"
    ORGANIZATION_UPDATED = "organization.updated"
    IMPORT_STARTED = "import.created"
    IMPORT_SUCCEEDED = "import.succeeded"
    IMPORT_FAILED = "import.failed"
    GENERATION_STARTED = "generation.created"
    GENERATION_SUCCEEDED = "generation.succeeded"
    GENERATION_FAILED = "generation.failed"
    GENERATION_CANCELLING = "generation.cancelling"
    GENERATION_CANCELLED = "generation.cancelled"
    GENERATION_RESUMED = "generation.resumed"
    JUDGMENT_CREATED = "judgment.created"
    JUDGMENT_EDITED = "judgment.edited"
    JUDGMENT_UNDONE = "judgment.undone"
    ADJUDICATION_DECIDED = "adjudication.decided"
    GOLD_SET = "item.gold_set"
    EXPORT_CREATED = "export.created"
    EXPORT_SUCCEEDED = "export.succeeded"
    EXPORT_FAILED = "export.failed"
    EXPORT_DOWNLOADED = "export.downloaded"
    TOKEN_CREATED = "token.created"
    TOKEN_USED = "token.used"
    TOKEN_REVOKED = "token.revoked"
    AUDIT_EXPORTED = "audit.exported"

    LABELS = {
        LOGIN: "Logged in",
        LOGOUT: "Logged out",
        LOGIN_FAILED: "Log-in failed",
        MEMBER_ADDED: "Member added",
        MEMBER_ROLE_CHANGED: "Role changed",
        MEMBER_REMOVED: "Member removed",
        PROJECT_CREATED: "Project created",
        PROJECT_UPDATED: "Project changed",
        PROJECT_SCHEMA_CHANGED: "Questions changed",
        PROJECT_DELETED: "Project deleted",
        ORGANIZATION_UPDATED: "Organization changed",
        IMPORT_STARTED: "Import started",
        IMPORT_SUCCEEDED: "Import succeeded",
        IMPORT_FAILED: "Import failed",
        GENERATION_STARTED: "Generation started",
        GENERATION_SUCCEEDED: "Generation succeeded",
        GENERATION_FAILED: "Generation failed",
        GENERATION_CANCELLING: "Generation cancel asked",
        GENERATION_CANCELLED: "Generation cancelled",
        GENERATION_RESUMED: "Generation resumed",
        JUDGMENT_CREATED: "Judgment submitted",
        JUDGMENT_EDITED: "Judgment edited",
        JUDGMENT_UNDONE: "Judgment undone",
        ADJUDICATION_DECIDED: "Disagreement decided",
        GOLD_SET: "Gold answer set",
        EXPORT_CREATED: "Export requested",
        EXPORT_SUCCEEDED: "Export written",
        EXPORT_FAILED: "Export failed",
        EXPORT_DOWNLOADED: "Export file downloaded",
        TOKEN_CREATED: "API token created",
        TOKEN_USED: "API token used",
        TOKEN_REVOKED: "API token revoked",
        AUDIT_EXPORTED: "Audit trail exported",
    }


def action_choices() -> list[tuple[str, str]]:
    return sorted(Action.LABELS.items(), key=lambda pair: pair[1])
