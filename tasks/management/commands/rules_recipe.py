from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django_scopes import scope

from tasks.feedback.rules import rules_recipe
from tasks.models import Organization


class Command(BaseCommand):
    help = (
        "Create or update a generation recipe from style and compliance rules: one variant "
        "that follows them all and one per rule that breaks it (tasks/feedback/rules.py)."
    )

    def add_arguments(self, parser):
        parser.add_argument("organization", help="The organization's slug.")
        parser.add_argument("name", help="The recipe's name (updated if it exists).")
        parser.add_argument(
            "--rule", action="append", default=[], dest="rules", help="A rule (repeatable)."
        )
        parser.add_argument(
            "--rules-file", help="A UTF-8 text file, one rule per line (blank lines skipped)."
        )
        parser.add_argument("--temperature", type=float, help="Default 0.7.")
        parser.add_argument("--max-tokens", type=int, help="Default 512.")

    def handle(self, *args, organization, name, rules, rules_file, **options):
        org = Organization.objects.filter(slug=organization).first()
        if org is None:
            raise CommandError(f"No organization {organization!r}.")
        rules = list(rules)
        if rules_file:
            try:
                text = Path(rules_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise CommandError(f"Cannot read {rules_file}: {error}") from None
            rules += [line for line in text.splitlines() if line.strip()]
        base = {}
        if options["temperature"] is not None:
            base["temperature"] = options["temperature"]
        if options["max_tokens"] is not None:
            base["max_tokens"] = options["max_tokens"]
        with scope(organization=org):
            try:
                recipe = rules_recipe(organization=org, name=name, rules=rules, base=base)
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(f"Recipe {recipe.name!r} ({len(recipe.variants)} variants):")
        for variant in recipe.variants:
            broken = variant["style_rules"]["breaks"]
            what = (
                "follows every rule"
                if broken is None
                else f"breaks rule {broken}: {variant['style_rules']['rules'][broken - 1]!r}"
            )
            self.stdout.write(
                f"  {variant['name']:<20} {what} (temperature {variant['temperature']}, "
                f"max_tokens {variant['max_tokens']}, seed {variant['seed']})"
            )
