from django.apps import AppConfig


class QcConfig(AppConfig):
    name = "qc"
    verbose_name = "Quality control"

    def ready(self):
        # Waits for app loading: the model and the audit receivers need the registry.
        from qc.models import Leaderboard, QCReport
        from tasks.audit import connect_job

        connect_job(QCReport, "qc_report")
        connect_job(Leaderboard, "leaderboard")
