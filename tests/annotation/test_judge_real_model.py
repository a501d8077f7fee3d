"""The AI judge with the real SmolLM2-135M (llama.cpp's server, tests/conftest.py): a run
over a few pairs finishes, every verdict is stored or counted as unparsed, and its figures
are computed and shown, whatever they are. A 135M model is expected to be a poor judge:
the point is that the figures say so, not that it judges well."""

from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation import judge
from annotation.models import JudgeDecision, JudgeRun, JudgeVerdict
from tasks.models import LLMEndpoint
from tests.annotation.test_judge import make_pairs
from tests.factories import ProjectFactory

PAIRS = [
    ("Paris is the capital of France.", "The capital of France is Berlin."),
    ("2 + 2 = 4.", "2 + 2 = 5, as everyone knows."),
    ("GOOD: Water boils at 100 °C at sea level.", "Water boils at 50 °C."),
]


def test_smollm2_judges_a_few_pairs_and_its_figures_are_shown(acme, llama_server, as_user):
    endpoint = LLMEndpoint.objects.create(
        name="SmolLM2",
        base_url=llama_server,
        model="smollm2",
        all_organizations=True,
        timeout_seconds=60,
        max_concurrent_requests=2,
    )
    project = ProjectFactory(organization=acme.organization, guidelines="Prefer correct answers.")
    make_pairs(project, PAIRS, gold={2})
    with scope(organization=acme.organization):
        judge.configure(
            project=project,
            endpoint_id=endpoint.pk,
            samples_per_order=1,
            temperature=0.7,
            max_tokens=48,
            routing=True,
        )
        run = judge.run(judge.start_run(project=project).pk)
    assert run.status == JudgeRun.Status.SUCCEEDED, run.error
    assert (run.items, run.total, run.done) == (3, 6, 6)
    with scopes_disabled():
        verdicts = list(JudgeVerdict.objects.filter(run=run))
        assert len(verdicts) == 6 and all(v.raw.strip() for v in verdicts)
        assert sum(v.outcome == "unparsed" for v in verdicts) == run.unparsed
        assert JudgeDecision.objects.filter(run=run).count() == 3
    figures = run.figures
    assert figures["items"] == 3 and figures["verdicts"] == 6 and figures["gold_items"] == 1
    assert figures["unparsed_share"] == round(run.unparsed / 6, 4)
    print("SmolLM2 judge figures:", figures)  # noqa: T201 (the report quotes them)
    page = as_user(acme.lead).get(reverse("annotation:judge", args=[project.pk]))
    shown = page.content.decode()
    assert (
        f'id="judge-flip-rate">{figures["flip_rate"] if figures["flip_rate"] is not None else "–"}<'
        in shown
    )
    assert "smollm2" in shown
