from django.core.management.base import BaseCommand

from tasks.demo import load_demo


class Command(BaseCommand):
    help = "Create (or refresh) the demo organization, its lead, two annotators and a project."

    def handle(self, *args, **options):
        logins = load_demo()
        self.stdout.write(self.style.SUCCESS("Demo organization 'Demo Lab' is ready. Log in with:"))
        for login in logins:
            self.stdout.write(f"  {login.role:<10} {login.email:<32} {login.password}")
