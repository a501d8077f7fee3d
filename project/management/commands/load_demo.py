from django.core.management.base import BaseCommand

from project.demo import STUDY_PROJECT_NAME, load_demo


class Command(BaseCommand):
    help = (
        "Create (or refresh) the demo organization: its lead, three annotators, the seed's "
        "DPO project (fresh, to annotate) and a finished study (judged, with a QC report, a "
        "review queue and an export)."
    )

    def handle(self, *args, **options):
        logins = load_demo()
        self.stdout.write(self.style.SUCCESS("Demo organization 'Demo Lab' is ready. Log in with:"))
        for login in logins:
            self.stdout.write(f"  {login.role:<10} {login.email:<32} {login.password}")
        self.stdout.write(
            f"The lead finds a finished study, '{STUDY_PROJECT_NAME}', with its quality report, "
            "review queue and export."
        )
