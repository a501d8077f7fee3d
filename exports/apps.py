from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        # Models and the audit trail can be imported only once the apps are loaded.
        from exports.models import Export
        from tasks.audit import connect_job

        connect_job(Export, "export")
