"""Judge-decided pairs in exports (issue 21): only when the lead lets exports take them and
routing let the judge decide; marked as the judge's (source ``judge``, its margin as the
confidence, the run in the reason), filtered like any source, counted on the card."""

import json

import pytest
from django_scopes import scope, scopes_disabled

from annotation.models import JudgeConfig
from exports.pairs import Options
from exports.services import export_to_folder
from tests.annotation.test_judge import configure, good_wins, judged, make_pairs, serve  # noqa: F401
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db
EVERYTHING = Options(policy="all", ratios=(1.0,))


@pytest.fixture
def decided(acme, serve):  # noqa: F811
    """Two items the judge is sure of (routed away from people) and a gold check."""
    project = ProjectFactory(organization=acme.organization, annotations_per_item=2)
    server = serve(good_wins)
    make_pairs(
        project, [("GOOD answer", "bad answer"), ("poor", "GOOD reply"), ("x", "GOOD")], gold={2}
    )
    configure(project, server.url, routing=True, audit_percent=0)
    run = judged(project)
    return project, run


def exported(project, folder, options=EVERYTHING):
    with scope(organization=project.organization):
        export_to_folder(project, "trl", folder, options)
    if not (folder / "train.jsonl").exists():  # no pair: no split file
        return [], [], (folder / "README.md").read_text()
    records = [json.loads(x) for x in (folder / "train.jsonl").read_text().splitlines()]
    lines = (folder / "train.provenance.jsonl").read_text().splitlines()
    return records, [json.loads(x) for x in lines], (folder / "README.md").read_text()


def consent(project):
    with scopes_disabled():
        JudgeConfig.objects.filter(project=project).update(include_in_exports=True)


def test_without_the_leads_consent_the_judges_pairs_stay_out(decided, tmp_path):
    project, _ = decided

    records, _, card = exported(project, tmp_path / "out")

    assert records == []
    assert "judge" not in card.split("## Pairs per source")[-1]


def test_with_consent_they_are_exported_marked_as_the_judges(decided, tmp_path):
    project, run = decided
    consent(project)

    records, provenance, card = exported(project, tmp_path / "trl")

    assert sorted((r["chosen"], r["rejected"]) for r in records) == [
        ("GOOD answer", "bad answer"),
        ("GOOD reply", "poor"),
    ]  # the gold item is a check, never a judge-decided pair
    assert {p["source"] for p in provenance} == {"judge"}
    assert all(p["confidence"] == 1.0 and p["status"] == "judge_decided" for p in provenance)
    assert all(f"AI judge run {run.pk}" in p["reason"] for p in provenance)
    assert all(p["votes"] == 0 and p["annotators"] == [] for p in provenance)
    assert "| judge | 2 | Decided by the project's AI judge" in card


def test_the_judges_pairs_are_filtered_like_any_source(decided, tmp_path):
    project, _ = decided
    consent(project)

    only_judge, _, _ = exported(
        project, tmp_path / "a", Options(policy="all", ratios=(1.0,), pair_sources=("judge",))
    )
    assert len(only_judge) == 2
    only_people, _, _ = exported(
        project, tmp_path / "b", Options(policy="all", ratios=(1.0,), pair_sources=("human",))
    )
    assert only_people == []
