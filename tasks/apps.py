from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Projects and prompts"

    def ready(self) -> None:
        from tasks import audit  # noqa: F401  (connects the audit trail's receivers)
        from tasks.api import schema  # noqa: F401  (registers the token auth scheme)
