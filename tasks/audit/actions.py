"""The catalogue of audit actions: each one's code (stored in ``AuditEvent.action``) and the
words a lead reads."""


class Action:
    """Every action the trail knows, with the words a lead reads."""

    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    LOGIN_FAILED = "auth.login_failed"
    PASSWORD_CHANGED = "auth.password_changed"
    PASSWORD_SET = "auth.password_set"
    PASSWORD_RESET = "auth.password_reset"
    MEMBER_ADDED = "member.added"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    INVITATION_SENT = "invitation.sent"
    INVITATION_ACCEPTED = "invitation.accepted"
    INVITATION_DECLINED = "invitation.declined"
    INVITATION_WITHDRAWN = "invitation.withdrawn"
    PROJECT_CREATED = "project.created"
    PROJECT_UPDATED = "project.updated"
    PROJECT_SCHEMA_CHANGED = "project.schema_changed"
    PROJECT_ANNOTATORS_CHANGED = "project.annotators_changed"
    PROJECT_DELETED = "project.deleted"
    ORGANIZATION_UPDATED = "organization.updated"
    IMPORT_STARTED = "import.created"
    IMPORT_SUCCEEDED = "import.succeeded"
    IMPORT_FAILED = "import.failed"
    IMPORT_REQUEUED = "import.requeued"
    GENERATION_STARTED = "generation.created"
    GENERATION_SUCCEEDED = "generation.succeeded"
    GENERATION_FAILED = "generation.failed"
    GENERATION_CANCELLING = "generation.cancelling"
    GENERATION_CANCELLED = "generation.cancelled"
    GENERATION_RESUMED = "generation.resumed"
    RECIPE_CREATED = "recipe.created"
    RECIPE_UPDATED = "recipe.updated"
    RECIPE_DELETED = "recipe.deleted"
    JUDGMENT_CREATED = "judgment.created"
    JUDGMENT_EDITED = "judgment.edited"
    JUDGMENT_UNDONE = "judgment.undone"
    ADJUDICATION_DECIDED = "adjudication.decided"
    NOTE_ADDED = "item.note_added"
    GOLD_SET = "item.gold_set"
    EXPORT_CREATED = "export.created"
    EXPORT_SUCCEEDED = "export.succeeded"
    EXPORT_FAILED = "export.failed"
    EXPORT_REQUEUED = "export.requeued"
    EXPORT_DOWNLOADED = "export.downloaded"
    QC_REPORT_CREATED = "qc_report.created"
    QC_REPORT_SUCCEEDED = "qc_report.succeeded"
    QC_REPORT_FAILED = "qc_report.failed"
    QC_REPORT_REQUEUED = "qc_report.requeued"
    QC_REPORT_DOWNLOADED = "qc_report.downloaded"
    LEADERBOARD_CREATED = "leaderboard.created"
    LEADERBOARD_SUCCEEDED = "leaderboard.succeeded"
    LEADERBOARD_FAILED = "leaderboard.failed"
    LEADERBOARD_REQUEUED = "leaderboard.requeued"
    LEADERBOARD_DOWNLOADED = "leaderboard.downloaded"
    JUDGE_CONFIGURED = "judge.configured"
    JUDGE_RUN_CREATED = "judge_run.created"
    JUDGE_RUN_SUCCEEDED = "judge_run.succeeded"
    JUDGE_RUN_FAILED = "judge_run.failed"
    JUDGE_RUN_REQUEUED = "judge_run.requeued"
    CHAT_SETTINGS_CHANGED = "chat.settings_changed"
    CHAT_TURN_CREATED = "chat_turn.created"
    CHAT_TURN_SUCCEEDED = "chat_turn.succeeded"
    CHAT_TURN_FAILED = "chat_turn.failed"
    CHAT_TURN_REQUEUED = "chat_turn.requeued"
    TOKEN_CREATED = "token.created"
    TOKEN_USED = "token.used"
    TOKEN_RENAMED = "token.renamed"
    TOKEN_REVOKED = "token.revoked"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFIED = "audit.verified"

    LABELS = {
        LOGIN: "Logged in",
        LOGOUT: "Logged out",
        LOGIN_FAILED: "Log-in failed",
        PASSWORD_CHANGED: "Password changed",
        PASSWORD_SET: "Password set",
        PASSWORD_RESET: "Password reset",
        MEMBER_ADDED: "Member added",
        MEMBER_ROLE_CHANGED: "Role changed",
        MEMBER_REMOVED: "Member removed",
        INVITATION_SENT: "Invitation sent",
        INVITATION_ACCEPTED: "Invitation accepted",
        INVITATION_DECLINED: "Invitation declined",
        INVITATION_WITHDRAWN: "Invitation withdrawn",
        PROJECT_CREATED: "Project created",
        PROJECT_UPDATED: "Project changed",
        PROJECT_SCHEMA_CHANGED: "Questions changed",
        PROJECT_ANNOTATORS_CHANGED: "Project annotators changed",
        PROJECT_DELETED: "Project deleted",
        ORGANIZATION_UPDATED: "Organization changed",
        IMPORT_STARTED: "Import started",
        IMPORT_SUCCEEDED: "Import succeeded",
        IMPORT_FAILED: "Import failed",
        IMPORT_REQUEUED: "Import started again (its worker died)",
        GENERATION_STARTED: "Generation started",
        GENERATION_SUCCEEDED: "Generation succeeded",
        GENERATION_FAILED: "Generation failed",
        GENERATION_CANCELLING: "Generation cancel asked",
        GENERATION_CANCELLED: "Generation cancelled",
        GENERATION_RESUMED: "Generation resumed",
        RECIPE_CREATED: "Generation recipe created",
        RECIPE_UPDATED: "Generation recipe changed",
        RECIPE_DELETED: "Generation recipe deleted",
        JUDGMENT_CREATED: "Judgment submitted",
        JUDGMENT_EDITED: "Judgment edited",
        JUDGMENT_UNDONE: "Judgment undone",
        ADJUDICATION_DECIDED: "Disagreement decided",
        NOTE_ADDED: "Discussion note added",
        GOLD_SET: "Gold answer set",
        EXPORT_CREATED: "Export requested",
        EXPORT_SUCCEEDED: "Export written",
        EXPORT_FAILED: "Export failed",
        EXPORT_REQUEUED: "Export started again (its worker died)",
        EXPORT_DOWNLOADED: "Export file downloaded",
        QC_REPORT_CREATED: "QC report requested",
        QC_REPORT_SUCCEEDED: "QC report computed",
        QC_REPORT_FAILED: "QC report failed",
        QC_REPORT_REQUEUED: "QC report started again (its worker died)",
        QC_REPORT_DOWNLOADED: "QC report downloaded",
        LEADERBOARD_CREATED: "Leaderboard requested",
        LEADERBOARD_SUCCEEDED: "Leaderboard computed",
        LEADERBOARD_FAILED: "Leaderboard failed",
        LEADERBOARD_REQUEUED: "Leaderboard started again (its worker died)",
        LEADERBOARD_DOWNLOADED: "Leaderboard downloaded",
        JUDGE_CONFIGURED: "AI judge set up or changed",
        JUDGE_RUN_CREATED: "AI judge run started",
        JUDGE_RUN_SUCCEEDED: "AI judge run finished",
        JUDGE_RUN_FAILED: "AI judge run failed",
        JUDGE_RUN_REQUEUED: "AI judge run started again (its worker died)",
        CHAT_SETTINGS_CHANGED: "Chat guardrails set or changed",
        CHAT_TURN_CREATED: "Chat turn asked for replies",
        CHAT_TURN_SUCCEEDED: "Chat turn's replies written",
        CHAT_TURN_FAILED: "Chat turn failed",
        CHAT_TURN_REQUEUED: "Chat turn started again (its worker died)",
        TOKEN_CREATED: "API token created",
        TOKEN_USED: "API token used",
        TOKEN_RENAMED: "API token renamed",
        TOKEN_REVOKED: "API token revoked",
        AUDIT_EXPORTED: "Audit trail exported",
        AUDIT_READ: "Audit trail read through the API",
        AUDIT_VERIFIED: "Audit trail verified",
    }


def action_choices() -> list[tuple[str, str]]:
    return sorted(Action.LABELS.items(), key=lambda pair: pair[1])
