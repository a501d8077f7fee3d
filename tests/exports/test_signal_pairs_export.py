"""Machine-made pairs in exports: what experts confirmed as it is, what they flipped
reversed, what they rejected and what signals contradict never; every pair with its source
and confidence, filtered by both, counted per source on the dataset card."""

import json

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_scopes import scope, scopes_disabled

from annotation.allocator import next_assignment
from annotation.services import submit_judgment
from exports.pairs import Options, extract
from exports.services import export_to_folder
from tasks.models import Candidate, Item, Role, SignalPair
from tests.factories import api_token, member
from tests.tasks.test_feedback_verify import judge, make_pair, queue, verification_project

pytestmark = pytest.mark.django_db
Status = SignalPair.Status


@pytest.fixture
def verified(acme):
    """A project with one pair of each fate, and one ordinary item judged by people:
    - "thumbs" accepted (0.9), never seen by an expert;
    - "edit" confirmed, "regeneration" flipped, "grade" rejected by the expert;
    - "ab_test" contradicted, "correction" still waiting (queued, not judged)."""
    project = verification_project(acme.organization)
    pairs = {
        "thumbs": make_pair(project, 0, rule="thumbs", confidence=0.9, status=Status.ACCEPTED),
        "edit": make_pair(project, 1, rule="edit", confidence=0.55),
        "regeneration": make_pair(project, 2, rule="regeneration", confidence=0.6),
        "grade": make_pair(project, 3, rule="grade", confidence=0.7),
        "ab_test": make_pair(
            project, 4, rule="ab_test", confidence=0.97, status=Status.CONTRADICTED
        ),
    }
    queue(project)
    verdicts = {"edit": ["agree"], "regeneration": ["flip"], "grade": ["reject"]}
    for _ in range(3):
        judge(project, acme.annotator, verdicts)
    # an ordinary item, judged by people: a "human" pair
    human = make_pair(project, 6, texts=("a careful answer", "a sloppy answer"))
    with scopes_disabled():
        SignalPair.objects.filter(pk=human.pk).delete()
        item = Item.objects.create(
            organization=acme.organization,
            project=project,
            prompt=human.prompt,
            mode="pairwise",
            candidate_key="-".join(sorted(str(c) for c in (human.chosen_id, human.rejected_id))),
        )
        item.slots.create(candidate=human.chosen, position=0)
        item.slots.create(candidate=human.rejected, position=1)
    with scope(organization=acme.organization):
        assignment = next_assignment(project=project, annotator=acme.annotator).assignment
        assert assignment.item_id == item.pk
        submit_judgment(
            project=project,
            assignment_id=assignment.pk,
            annotator=acme.annotator,
            answers={"preference": "AB"[assignment.display_order.index(human.chosen_id)]},
        )
    pairs["correction"] = make_pair(project, 5, rule="correction", confidence=0.4)
    queue(project)
    with scopes_disabled():
        for pair in pairs.values():
            pair.refresh_from_db()
    assert {rule: pair.status for rule, pair in pairs.items()} == {
        "thumbs": "accepted",
        "edit": "confirmed",
        "regeneration": "flipped",
        "grade": "rejected",
        "ab_test": "contradicted",
        "correction": "to_verify",
    }
    return project, pairs, human


def texts(project, **options) -> dict:
    """(chosen text, rejected text) → (source, confidence) of every exported pair."""
    with scope(organization=project.organization):
        return {
            (p.chosen.text, p.rejected.text): (p.source, p.confidence)
            for p in extract(project, Options(policy="all", ratios=(1.0,), **options))
        }


def test_confirmed_as_is_flipped_reversed_the_rest_never(verified):
    project, _, _ = verified
    assert texts(project) == {
        ("edited reply 0", "original reply 0"): ("thumbs", 0.9),
        ("edited reply 1", "original reply 1"): ("edit", 1.0),
        ("original reply 2", "edited reply 2"): ("regeneration", 1.0),
        ("a careful answer", "a sloppy answer"): ("human", 1.0),
    }


def test_filters_by_source_and_confidence(verified):
    project, _, _ = verified
    assert set(texts(project, pair_sources=("edit", "regeneration")).values()) == {
        ("edit", 1.0),
        ("regeneration", 1.0),
    }
    assert set(texts(project, pair_sources=("human",)).values()) == {("human", 1.0)}
    assert ("thumbs", 0.9) not in texts(project, min_confidence=0.95).values()
    assert len(texts(project, min_confidence=0.9)) == 4
    with pytest.raises(ValueError, match="unknown pair source"):
        texts(project, pair_sources=("gossip",))


def test_a_verified_pairs_confidence_is_its_experts_share(acme):
    project = verification_project(acme.organization, annotations_per_item=3)
    make_pair(project, 0, confidence=0.3)
    queue(project)
    for verdict in ("flip", "flip", "agree"):
        judge(project, member(acme.organization, Role.ANNOTATOR), verdict)
    assert texts(project) == {("original reply 0", "edited reply 0"): ("edit", 0.6667)}


def test_files_carry_source_and_confidence_and_the_card_counts_them(verified, tmp_path, acme):
    project, pairs, _ = verified
    with scope(organization=project.organization):
        manifest = export_to_folder(
            project, "trl", tmp_path / "trl", Options(policy="all", ratios=(1.0,))
        )
        export_to_folder(project, "parquet", tmp_path / "pq", Options(policy="all", ratios=(1.0,)))
    records = [json.loads(x) for x in (tmp_path / "trl" / "train.jsonl").read_text().splitlines()]
    lines = (tmp_path / "trl" / "train.provenance.jsonl").read_text().splitlines()
    provenance = [json.loads(x) for x in lines]
    assert all(set(r) == {"prompt", "chosen", "rejected"} for r in records)  # TRL's own keys
    by_source = {p["source"]: (p, r) for p, r in zip(provenance, records, strict=True)}
    assert set(by_source) == {"thumbs", "edit", "regeneration", "human"}
    flipped, record = by_source["regeneration"]
    assert (record["chosen"], record["rejected"]) == ("original reply 2", "edited reply 2")
    assert flipped["status"] == "flipped" and flipped["signal_pair"] == pairs["regeneration"].pk
    assert flipped["confidence"] == 1.0 and flipped["annotators"] == [acme.annotator.email]
    assert by_source["thumbs"][0]["confidence"] == 0.9 and by_source["thumbs"][0]["votes"] == 0
    assert manifest["sources"] == {"edit": 1, "human": 1, "regeneration": 1, "thumbs": 1}
    card = (tmp_path / "trl" / "README.md").read_text()
    assert "## Pairs per source" in card
    assert "| regeneration | 1 | Kept regeneration over the discarded one |" in card
    # the mean agreement is that of judged pairs only (the accepted one is left out)
    assert manifest["mean_agreement"] == 1.0
    table = pq.read_table(tmp_path / "pq" / "train.parquet").to_pylist()
    assert sorted((row["source"], row["confidence"]) for row in table) == [
        ("edit", 1.0),
        ("human", 1.0),
        ("regeneration", 1.0),
        ("thumbs", 0.9),
    ]


def test_verification_judgments_make_no_human_pair_of_their_own(verified):
    project, _, _ = verified
    sources = [source for source, _ in texts(project).values()]
    assert sources.count("human") == 1


def test_the_command_filters_by_pair_source(verified, tmp_path, capsys):
    project, _, _ = verified
    call_command(
        "export_dataset",
        f"{project.organization.slug}/{project.pk}",
        "--format",
        "trl",
        "--out",
        str(tmp_path / "cmd"),
        "--split",
        "1.0",
        "--pair-source",
        "regeneration",
        "--min-confidence",
        "0.5",
    )
    [record] = [json.loads(x) for x in (tmp_path / "cmd" / "train.jsonl").read_text().splitlines()]
    assert (record["chosen"], record["rejected"]) == ("original reply 2", "edited reply 2")
    with pytest.raises(CommandError):
        call_command(
            "export_dataset",
            f"{project.organization.slug}/{project.pk}",
            "--format",
            "trl",
            "--out",
            str(tmp_path / "bad"),
            "--min-confidence",
            "2",
        )


def test_the_api_takes_the_filters_and_refuses_unknown_sources(verified, client):
    project, _, _ = verified
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_token(project.organization)[1]}"}
    url = f"/api/v1/projects/{project.pk}/exports"
    bad = client.post(
        url,
        {"format": "trl", "options": {"pair_sources": ["gossip"]}},
        content_type="application/json",
        **headers,
    )
    assert bad.status_code == 400 and "unknown pair source" in bad.content.decode()
    good = client.post(
        url,
        {"format": "trl", "options": {"pair_sources": ["edit"], "min_confidence": 0.5}},
        content_type="application/json",
        **headers,
    )
    assert good.status_code == 202, good.content
    assert good.json()["options"]["pair_sources"] == ["edit"]


def test_the_export_page_offers_the_filters(verified, as_user, acme):
    project, _, _ = verified
    page = as_user(acme.lead).get(f"/projects/{project.pk}/exports/").content.decode()
    assert 'name="min_confidence"' in page
    for source in ("human", "edit", "thumbs", "ab_test"):
        assert f'name="pair_sources" value="{source}"' in page


def test_candidates_of_another_organization_never_leak_in(verified, globex):
    project, _, _ = verified
    other = verification_project(globex.organization)
    make_pair(other, 9, status=Status.ACCEPTED, confidence=1.0, texts=("theirs", "not ours"))
    exported = texts(project)
    assert not any("theirs" in chosen for chosen, _ in exported)
    with scopes_disabled():
        assert Candidate.objects.filter(text="theirs").exists()
