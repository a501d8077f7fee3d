"""The leaderboard of a hand-made project: exact records and order of its sources, the
battles each kind of judgment implies, the organization-wide board, and the doors (page,
downloads, API) with their roles and tenancy."""

import csv
import io
import json

import pytest
from django.test import Client
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation.models import Assignment, Judgment
from qc.leaderboard import compute_leaderboard, implied_pairs, source_label
from qc.models import Leaderboard
from qc.services import run_leaderboard
from tasks.models import Candidate, Item, Role
from tests.factories import ProjectFactory, PromptFactory, api_token, member

pytestmark = pytest.mark.django_db


class Arena:
    """A project whose candidates come from named sources; ``judge`` stores a judgment."""

    def __init__(self, organization, project=None):
        self.organization = organization
        with scopes_disabled():
            self.project = project or ProjectFactory(organization=organization)
        self.people = [member(organization, Role.ANNOTATOR) for _ in range(4)]
        self.prompts = 0

    def item(self, *sources, mode="pairwise", lengths=None):
        """An item whose candidates come from ``sources``: a model name, or
        ("", source_key) for an imported column without a model."""
        with scopes_disabled():
            self.prompts += 1
            prompt = PromptFactory(project=self.project, external_id=f"a{self.prompts}")
            candidates = []
            for n, source in enumerate(sources):
                model, key = (source, "") if isinstance(source, str) else source
                text = "x" * (lengths[n] if lengths else 10 + n)
                candidates.append(
                    Candidate.objects.create(
                        organization=self.organization,
                        prompt=prompt,
                        text=text,
                        model=model,
                        source_key=key,
                        content_hash=f"{self.prompts}-{n}",
                    )
                )
            item = Item.objects.create(
                organization=self.organization,
                project=self.project,
                prompt=prompt,
                mode=mode,
                candidate_key="-".join(str(c.pk) for c in sorted(candidates, key=lambda c: c.pk)),
            )
        return item, candidates

    def judge(self, item, person, outcome, chosen=None, rejected=None, ranking=()):
        with scopes_disabled():
            assignment = Assignment.objects.create(
                organization=self.organization,
                project=self.project,
                item=item,
                annotator=self.people[person],
                status="submitted",
                display_order=[],
                expires_at="2030-01-01T00:00:00Z",
            )
            Judgment.objects.create(
                organization=self.organization,
                project=self.project,
                item=item,
                assignment=assignment,
                annotator=self.people[person],
                outcome=outcome,
                chosen=chosen,
                rejected=rejected,
                ranking=[c.pk for c in ranking],
            )


def three_sources(organization) -> Arena:
    """alpha beats beta twice and ties once, beats the imported column once; beta beats
    the imported column twice; a both-bad judgment is no battle."""
    arena = Arena(organization)
    item, (alpha, beta) = arena.item("alpha", "beta")
    arena.judge(item, 0, "preferred", alpha, beta)
    arena.judge(item, 1, "preferred", alpha, beta)
    arena.judge(item, 2, "tie")
    item, (beta, imported) = arena.item("beta", ("", "response_c"))
    arena.judge(item, 0, "preferred", beta, imported)
    arena.judge(item, 1, "preferred", beta, imported)
    item, (alpha, imported) = arena.item("alpha", ("", "response_c"))
    arena.judge(item, 0, "preferred", alpha, imported)
    arena.judge(item, 1, "both_bad")
    return arena


def test_leaderboard_of_a_hand_made_project(acme):
    arena = three_sources(acme.organization)
    with scope(organization=acme.organization):
        board = compute_leaderboard(acme.organization, arena.project, rounds=50, seed=1)

    assert (board["judgments"], board["battles"], board["ties"]) == (7, 6, 1)
    records = [
        (s["rank"], s["source"], s["battles"], s["wins"], s["ties"], s["losses"])
        for s in board["sources"]
    ]
    assert records == [
        (1, "alpha", 4, 3, 1, 0),
        (2, "beta", 5, 2, 1, 2),
        (3, "imported:response_c", 3, 0, 0, 3),
    ]
    alpha = board["sources"][0]
    assert alpha["lower"] <= alpha["rating"] <= alpha["upper"]
    assert board["win_rate"]["sources"] == ["alpha", "beta", "imported:response_c"]
    assert board["win_rate"]["values"][0][1] == pytest.approx(2.5 / 3, abs=1e-4)
    assert board["win_rate"]["values"][1][2] == 1.0
    assert board["warnings"] == ["Only 6 battles: the intervals are wide and the order may change."]


def test_best_worst_and_ranking_judgments_imply_their_pairs():
    # best 1, worst 4 of four: best beats all, the two in the middle beat the worst
    assert sorted(implied_pairs("ranked", 1, 4, [], "1-2-3-4", "best_worst")) == [
        (1, 2, 1.0),
        (1, 3, 1.0),
        (1, 4, 1.0),
        (2, 4, 1.0),
        (3, 4, 1.0),
    ]
    assert implied_pairs("ranked", 3, 1, [3, 1, 2], "1-2-3", "ranking") == [
        (3, 1, 1.0),
        (3, 2, 1.0),
        (1, 2, 1.0),
    ]
    assert implied_pairs("tie", None, None, [], "5-9", "pairwise") == [(5, 9, 0.5)]
    assert implied_pairs("both_bad", None, None, [], "5-9", "pairwise") == []


def test_source_kinds_name_variants_and_recipes():
    generated = {"recipe": "house", "variant": "terse", "temperature": 0.2}
    assert source_label("model", "llama", "generated", "gen:abcdef1234", generated) == "llama"
    assert (
        source_label("variant", "llama", "generated", "gen:abcdef1234", generated)
        == "llama · terse (abcdef12)"
    )
    assert source_label("recipe", "llama", "generated", "gen:abcdef1234", generated) == (
        "recipe:house"
    )
    # an imported candidate has no recipe: it stands for its model source
    assert source_label("recipe", "", "imported", "response_a", {}) == "imported:response_a"
    assert (
        source_label("variant", "gpt", "imported", "response_a", {"temperature": 0.7})
        == "gpt · temperature=0.7"
    )


def test_organization_leaderboard_counts_every_project_and_no_other_organization(acme, globex):
    arena = three_sources(acme.organization)
    second = Arena(acme.organization)
    item, (gamma, alpha) = second.item("gamma", "alpha")
    second.judge(item, 0, "preferred", gamma, alpha)
    other = Arena(globex.organization)
    item, (alpha_there, delta) = other.item("alpha", "delta")
    other.judge(item, 0, "preferred", delta, alpha_there)
    with scope(organization=acme.organization):
        board = compute_leaderboard(acme.organization, None, rounds=10)
        single = compute_leaderboard(acme.organization, arena.project, rounds=10)
    assert board["battles"] == 7 and single["battles"] == 6
    assert {s["source"] for s in board["sources"]} == {
        "alpha",
        "beta",
        "gamma",
        "imported:response_c",
    }


def test_length_control_reports_a_coefficient(acme):
    arena = Arena(acme.organization)
    # The longer answer wins 10 of 12 times, whichever source wrote it.
    for n in range(12):
        lengths = [900 + n, 100 + n] if n % 2 else [100 + n, 900 + n]
        item, (first, second) = arena.item("one", "two", lengths=lengths)
        longer, shorter = (first, second) if n % 2 else (second, first)
        if n < 10:
            arena.judge(item, 0, "preferred", longer, shorter)
        else:
            arena.judge(item, 0, "preferred", shorter, longer)
    with scope(organization=acme.organization):
        board = compute_leaderboard(acme.organization, arena.project, length_control=True)
    controlled = board["length_control"]
    assert controlled is not None and len(controlled["sources"]) == 2
    assert controlled["coefficient"] > 0.5  # longer wins
    assert controlled["interval"][0] <= controlled["coefficient"] <= controlled["interval"][1]


def computed(arena, organization, project="arena", **fields) -> Leaderboard:
    with scope(organization=organization):
        board = Leaderboard.objects.create(
            organization=organization,
            project=arena.project if project == "arena" else project,
            **fields,
        )
        assert run_leaderboard(board.pk).status == Leaderboard.Status.SUCCEEDED
        board.refresh_from_db()
    return board


def test_lead_reads_the_page_and_downloads_csv_and_json(acme, as_user):
    arena = three_sources(acme.organization)
    board = computed(arena, acme.organization)
    client = as_user(acme.lead)
    page = client.get(reverse("qc:leaderboard", args=[arena.project.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "imported:response_c" in html and "<svg" in html and 'id="leaderboard-table"' in html

    rows = list(
        csv.reader(
            io.StringIO(
                client.get(
                    reverse("qc:download_leaderboard", args=[arena.project.pk, "csv"])
                ).content.decode()
            )
        )
    )
    assert rows[0][:3] == ["rank", "source", "rating"]
    assert [r[1] for r in rows[1:4]] == ["alpha", "beta", "imported:response_c"]
    assert rows[5][1:] == ["alpha", "beta", "imported:response_c"]
    response = client.get(reverse("qc:download_leaderboard", args=[arena.project.pk, "json"]))
    assert response["Content-Disposition"].endswith(
        f'leaderboard-{arena.project.pk}-{board.pk}.json"'
    )
    assert json.loads(response.content)["battles"] == 6


def test_source_names_are_escaped_on_the_page(acme, as_user):
    arena = Arena(acme.organization)
    item, (bad, good) = arena.item("<script>alert(1)</script>", "fine")
    arena.judge(item, 0, "preferred", good, bad)
    computed(arena, acme.organization)
    html = as_user(acme.lead).get(reverse("qc:leaderboard", args=[arena.project.pk])).content
    assert b"<script>alert(1)" not in html and b"&lt;script&gt;alert(1)" in html


def test_lead_starts_a_computation_with_the_chosen_sources(acme, as_user):
    response = as_user(acme.lead).post(
        reverse("qc:compute_leaderboard", args=[acme.project.pk]),
        {"source_kind": "variant", "length_control": "on"},
    )
    assert response.status_code == 302
    with scopes_disabled():
        board = Leaderboard.objects.get()
    assert (board.project, board.source_kind, board.length_control) == (
        acme.project,
        "variant",
        True,
    )
    assert board.created_by == acme.lead and board.status == Leaderboard.Status.QUEUED


def test_annotators_get_403_and_other_organizations_404(acme, globex, as_user):
    arena = three_sources(acme.organization)
    computed(arena, acme.organization)
    annotator = as_user(acme.annotator)
    for url in (
        reverse("qc:leaderboard", args=[arena.project.pk]),
        reverse("qc:download_leaderboard", args=[arena.project.pk, "json"]),
        reverse("qc:organization_leaderboard"),
    ):
        assert annotator.get(url).status_code == 403
    assert annotator.post(reverse("qc:compute_organization_leaderboard")).status_code == 403
    stranger = as_user(globex.lead)
    for url in (
        reverse("qc:leaderboard", args=[arena.project.pk]),
        reverse("qc:download_leaderboard", args=[arena.project.pk, "csv"]),
    ):
        assert stranger.get(url).status_code == 404
    assert (
        stranger.post(reverse("qc:compute_leaderboard", args=[arena.project.pk])).status_code == 404
    )
    # Globex's organization page has nothing of Acme's.
    assert (
        stranger.get(reverse("qc:download_organization_leaderboard", args=["json"])).status_code
        == 404
    )
    with scopes_disabled():
        assert Leaderboard.objects.count() == 1


def test_organization_page_for_leads(acme, as_user):
    arena = three_sources(acme.organization)
    computed(arena, acme.organization, project=None)
    response = as_user(acme.lead).get(reverse("qc:organization_leaderboard"))
    assert response.status_code == 200
    assert "Leaderboard of all projects" in response.content.decode()
    assert "imported:response_c" in response.content.decode()


def test_api_starts_a_computation_and_reads_the_latest(acme, globex):
    arena = three_sources(acme.organization)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_token(acme.organization)[1]}"}
    client = Client()
    url = f"/api/v1/projects/{arena.project.pk}/leaderboard"
    assert client.get(url, **headers).status_code == 404  # none yet
    response = client.post(
        url, {"source_kind": "recipe"}, content_type="application/json", **headers
    )
    assert response.status_code == 202
    board_id = response.json()["id"]
    assert response["Location"] == f"/api/v1/leaderboards/{board_id}"
    assert (
        client.post(
            url, {"source_kind": "nonsense"}, content_type="application/json", **headers
        ).status_code
        == 400
    )
    with scope(organization=acme.organization):
        run_leaderboard(board_id)
    latest = client.get(url, **headers).json()
    assert latest["source_kind"] == "recipe" and latest["status"] == "succeeded"
    assert [s["source"] for s in latest["data"]["sources"]][0] == "alpha"
    assert client.get(f"/api/v1/leaderboards/{board_id}", **headers).status_code == 200

    other = {"HTTP_AUTHORIZATION": f"Bearer {api_token(globex.organization)[1]}"}
    assert client.get(url, **other).status_code == 404
    assert client.post(url, {}, content_type="application/json", **other).status_code == 404
    assert client.get(f"/api/v1/leaderboards/{board_id}", **other).status_code == 404
    assert (
        client.post(
            "/api/v1/leaderboard", {}, content_type="application/json", **headers
        ).status_code
        == 202
    )


def test_api_refuses_annotators(acme, as_user):
    response = as_user(acme.annotator).post(
        f"/api/v1/projects/{acme.project.pk}/leaderboard", {}, content_type="application/json"
    )
    assert response.status_code == 403
