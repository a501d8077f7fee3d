from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"

    def ready(self) -> None:
        from exports.models import Export
        from tasks.audit import connect_job

        connect_job(Export, "export")
