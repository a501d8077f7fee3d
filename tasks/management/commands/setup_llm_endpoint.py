"""Create (or update) an LLM endpoint from the command line; docker compose runs it with
the default endpoint's settings so the Ollama service is ready to use."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tasks.llm import check_base_url
from tasks.models import LLMEndpoint, Organization


class Command(BaseCommand):
    help = (
        "Create or update an LLM endpoint (an OpenAI-compatible server). Without arguments, "
        "the default one from CHOSEN_DEFAULT_LLM_URL / CHOSEN_DEFAULT_LLM_MODEL."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", default="default")
        parser.add_argument("--url", default=settings.CHOSEN_DEFAULT_LLM_URL)
        parser.add_argument("--model", default=settings.CHOSEN_DEFAULT_LLM_MODEL)
        parser.add_argument("--timeout", type=float, default=120)
        parser.add_argument("--max-concurrent", type=int, default=2)
        parser.add_argument(
            "--organizations",
            nargs="*",
            help="Slugs of the organizations that may use it (default: all of them).",
        )

    def handle(self, *args, name, url, model, timeout, max_concurrent, organizations, **_):
        if not url:
            self.stdout.write("No endpoint URL given (CHOSEN_DEFAULT_LLM_URL is empty).")
            return
        try:
            url = check_base_url(url)
        except ValueError as error:
            raise CommandError(f"{url}: {error}") from None
        if not 1 <= max_concurrent <= 64:
            raise CommandError("--max-concurrent must be between 1 and 64.")
        endpoint, created = LLMEndpoint.objects.update_or_create(
            name=name,
            defaults={
                "base_url": url,
                "model": model,
                "timeout_seconds": timeout,
                "max_concurrent_requests": max_concurrent,
            },
            # Who may use it is decided once (or with --organizations): a restart must not
            # reopen an endpoint a superuser restricted.
            create_defaults={
                "base_url": url,
                "model": model,
                "timeout_seconds": timeout,
                "max_concurrent_requests": max_concurrent,
                "all_organizations": organizations is None,
            },
        )
        if organizations is not None:
            found = list(Organization.objects.filter(slug__in=organizations))
            unknown = set(organizations) - {o.slug for o in found}
            if unknown:
                raise CommandError(f"Unknown organization(s): {', '.join(sorted(unknown))}")
            endpoint.all_organizations = False
            endpoint.save(update_fields=["all_organizations"])
            endpoint.organizations.set(found)
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} LLM endpoint {endpoint.name}: {url} ({model}).")
