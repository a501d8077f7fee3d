from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"

    def ready(self):
        # Waits for app loading: the model and the audit receivers need the registry.
        from annotation.models import JudgeRun
        from tasks.audit import connect_job

        connect_job(JudgeRun, "judge_run")
