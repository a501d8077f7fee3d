from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django_scopes import scope

from tasks.importers.potato import PotatoImportFailed, import_potato_project
from tasks.management.commands.import_prompts import print_problems, progress_printer
from tasks.models import Organization


class Command(BaseCommand):
    help = "Create or update a project from a Potato config.yaml and import its data_files."

    def add_arguments(self, parser):
        parser.add_argument("config", type=Path, help="Potato config.yaml")
        parser.add_argument("--organization", required=True, help="organization slug")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the valid rows and report the rejected ones",
        )

    def handle(self, *args, config: Path, organization: str, skip_invalid: bool, **options):
        org = Organization.objects.filter(slug=organization).first()
        if org is None:
            raise CommandError(f"No organization with slug {organization!r}.")
        try:
            text = config.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CommandError(f"{config}: file not found") from None
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{config}: the config is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                f"at position {exc.start}); save it as UTF-8"
            ) from None
        with scope(organization=org):
            try:
                project, created, report, warnings = import_potato_project(
                    organization=org,
                    config_text=text,
                    config_name=str(config),
                    base_dir=config.resolve().parent,
                    skip_invalid=skip_invalid,
                    progress=progress_printer(self.stderr),
                )
            except PotatoImportFailed as exc:
                print_problems(self.stderr, exc.problems)
                raise CommandError("Nothing was imported.") from None
        for warning in warnings:
            self.stderr.write(f"warning: {warning}")
        print_problems(self.stderr, report.problems, rejected=True)
        verb = "Created" if created else "Updated"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} project {project.name!r} (id {project.pk}, {project.mode}, "
                f"{len(project.questions)} questions). {report.summary()}."
            )
        )
