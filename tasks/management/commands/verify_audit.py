"""Check the audit trail's hash chains and name the first broken link of each."""

from django.core.management.base import BaseCommand, CommandError
from django_scopes import scopes_disabled

from tasks.audit.chain import chains, verify
from tasks.models import Organization


class Command(BaseCommand):
    help = (
        "Check every organization's audit trail (or one's, with --organization) against its "
        "hash chain. Prints each chain's events and newest hash, or the first event where "
        "the chain breaks; exits with status 1 if any chain is broken."
    )

    def add_arguments(self, parser):
        parser.add_argument("--organization", metavar="SLUG", help="Only this organization.")

    def handle(self, *args, organization=None, **_):
        with scopes_disabled():
            names = dict(Organization.objects.values_list("pk", "slug"))
            if organization:
                ids = [pk for pk, slug in names.items() if slug == organization]
                if not ids:
                    raise CommandError(f"No organization {organization!r}.")
            else:
                ids = chains()
        broken = 0
        for organization_id in ids:
            if organization_id is None:
                name = "(no organization)"
            else:
                name = names.get(organization_id, f"(deleted organization {organization_id})")
            result = verify(organization_id)
            if result.intact:
                self.stdout.write(
                    f"{name}: intact, {result.events} events, newest number "
                    f"{result.head_sequence}, hash {result.head_hash}"
                )
            else:
                broken += 1
                self.stdout.write(
                    f"{name}: BROKEN at {result.broken} ({result.events} events intact before it)"
                )
        if broken:
            raise CommandError(f"{broken} of {len(ids)} audit chains are broken.")
