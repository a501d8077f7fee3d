from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Projects and prompts"

    def ready(self) -> None:
        from tasks.api import schema  # noqa: F401  (registers the token auth scheme)
        from tasks.audit import receivers  # noqa: F401  (connects the audit trail's receivers)
