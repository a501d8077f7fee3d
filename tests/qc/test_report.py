"""The QC report on a project with known judgments: numbers asserted exactly."""

import os
import random
import statistics
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_scopes import scope, scopes_disabled

from annotation.models import Assignment, Judgment
from project.celery import app as celery_app
from qc import report as qc_report
from qc.models import QCReport
from qc.report import binomial_two_sided, compute_report, near_identical, similar_groups
from qc.services import request_report, run_report
from tasks.models import Candidate, Item, Role
from tasks.schema import validate_questions
from tasks.text import split_words
from tests.factories import ProjectFactory, PromptFactory, member

pytestmark = pytest.mark.django_db

QUESTIONS = validate_questions(
    [
        {
            "name": "preference",
            "kind": "preference",
            "labels": [
                {"text": "A is better", "means": "A", "key": "a"},
                {"text": "B is better", "means": "B", "key": "b"},
                {"text": "Tie", "means": "tie", "key": "t"},
            ],
        },
        {"name": "dimension", "kind": "choice", "options": ["helpful", "honest"]},
    ],
    mode="pairwise",
)


class Data:
    """A project with n items of two candidates each; ``judge`` stores one judgment the way
    the workspace does (display order recorded, preference resolved to candidate ids)."""

    def __init__(self, organization, n_items: int, overlap: int = 2):
        self.organization = organization
        with scopes_disabled():
            self.project = ProjectFactory(
                organization=organization, questions=QUESTIONS, annotations_per_item=overlap
            )
            self.items = []
            for n in range(n_items):
                prompt = PromptFactory(project=self.project, external_id=f"p{n}")
                pair = [
                    Candidate.objects.create(
                        organization=organization,
                        prompt=prompt,
                        text=f"{side} answer to prompt {n}",
                        content_hash=f"{n}{side}",
                    )
                    for side in ("first", "second")
                ]
                item = Item.objects.create(
                    organization=organization,
                    project=self.project,
                    prompt=prompt,
                    mode="pairwise",
                    candidate_key=f"{pair[0].pk}-{pair[1].pk}",
                    target_annotations=overlap,
                )
                self.items.append((item, pair))

    def judge(self, annotator, n: int, pick: int | None, *, swapped=False, dimension="helpful"):
        """``pick``: 0 or 1 (the item's first or second candidate by id), None for a tie."""
        item, pair = self.items[n]
        order = [pair[1].pk, pair[0].pk] if swapped else [pair[0].pk, pair[1].pk]
        with scopes_disabled():
            assignment = Assignment.objects.create(
                organization=self.organization,
                project=self.project,
                item=item,
                annotator=annotator,
                status="submitted",
                display_order=order,
                expires_at="2030-01-01T00:00:00Z",
            )
            chosen = None if pick is None else pair[pick]
            label = (
                "Tie"
                if pick is None
                else ("A is better" if order[0] == chosen.pk else "B is better")
            )
            Judgment.objects.create(
                organization=self.organization,
                project=self.project,
                item=item,
                assignment=assignment,
                annotator=annotator,
                outcome="tie" if pick is None else "preferred",
                chosen=chosen,
                rejected=None if pick is None else pair[1 - pick],
                label=label,
                answers={"dimension": dimension},
                time_spent_ms=1000 * (n + 1),
            )


def test_report_numbers_on_known_judgments(acme):
    data = Data(acme.organization, 4)
    a, b = (member(acme.organization, Role.ANNOTATOR, email=e) for e in ("a@x.org", "b@x.org"))
    # Items 0-2: both judge; they agree on 0 and 1 (b sees the order swapped), not on 2.
    data.judge(a, 0, 0)
    data.judge(b, 0, 0, swapped=True)
    data.judge(a, 1, 1)
    data.judge(b, 1, 1, swapped=True)
    data.judge(a, 2, 0, dimension="honest")
    data.judge(b, 2, None, dimension="honest")
    data.judge(a, 3, 1)  # item 3: one judgment of the two wanted
    with scopes_disabled():
        Assignment.objects.create(
            organization=acme.organization,
            project=data.project,
            item=data.items[3][0],
            annotator=b,
            status="skipped",
            display_order=[],
            expires_at="2030-01-01T00:00:00Z",
        )
    with scope(organization=acme.organization):
        report = compute_report(data.project)

    assert report["judgments"] == 7 and report["annotators"] == 2
    assert report["coverage"] == {"items": 4, "complete": 3, "share": 0.75}
    preference = report["agreement"]["preference"]
    assert preference["units"] == 3
    assert preference["percent_agreement"] == pytest.approx(2 / 3, abs=1e-4)
    # Categories "1", "2", "tie" over 3 items: p = (3/6, 2/6, 1/6), Pe = 14/36.
    assert preference["fleiss_kappa"] == pytest.approx((2 / 3 - 14 / 36) / (1 - 14 / 36), abs=1e-4)
    assert report["agreement"]["dimension"]["percent_agreement"] == 1.0
    assert report["kappa_matrix"]["annotators"] == ["a@x.org", "b@x.org"]
    # a: [1, 2, 1] vs b: [1, 2, tie] -> po 2/3, pe (2/3*1/3 + 1/3*1/3) = 1/3 -> kappa 0.5
    assert report["kappa_matrix"]["values"] == [[1.0, 0.5], [0.5, 1.0]]
    person_a, person_b = report["per_annotator"]
    assert person_a["judgments"] == 4 and person_a["median_time_ms"] == 2500
    assert person_a["skip_rate"] == 0 and person_b["skip_rate"] == pytest.approx(0.25)
    assert person_a["agreement_with_peers"] == pytest.approx(2 / 3, abs=1e-4)
    # a always saw the ids in order and picked: first, second, first, second -> 2 of 4 left
    assert (person_a["left_choices"], person_a["sided_choices"]) == (2, 4)
    assert (person_b["left_choices"], person_b["sided_choices"]) == (1, 2)
    assert report["labels"] == {"A is better": 3, "B is better": 3, "Tie": 1}
    assert report["labels_by_answer"]["dimension"]["honest"] == {"A is better": 1, "Tie": 1}
    assert report["duplicates"]["exact_prompt_groups"] == []
    assert any("a@x.org made 57%" in w for w in report["warnings"])


def test_an_annotator_who_always_picks_the_left_slot_is_flagged(acme):
    data = Data(acme.organization, 24, overlap=1)
    left, fair = member(acme.organization, email="left@x.org"), member(acme.organization)
    for n in range(12):  # whatever the order on screen, the left one
        data.judge(left, n, 1 if n % 2 else 0, swapped=bool(n % 2))
    for n in range(12, 24):
        data.judge(fair, n, n % 2, swapped=bool(n % 3 == 0))
    with scope(organization=acme.organization):
        report = compute_report(data.project)
    flagged = {p["annotator"]: p for p in report["per_annotator"]}
    assert flagged["left@x.org"]["left_share"] == 1.0
    assert flagged["left@x.org"]["position_bias"] is True
    assert flagged["left@x.org"]["position_bias_p_value"] == pytest.approx(2 / 4096, abs=1e-6)
    assert not [
        p for p in report["per_annotator"] if p["position_bias"] and p is not flagged["left@x.org"]
    ]
    assert any("left@x.org picks the left response 100%" in w for w in report["warnings"])


def test_binomial_p_value():
    assert binomial_two_sided(5, 10) == pytest.approx(1.0)
    assert binomial_two_sided(10, 10) == pytest.approx(2 / 1024)
    assert binomial_two_sided(0, 0) == 1.0


def _project_with_duplicates(acme) -> Data:
    """Two items, an exact copy of a prompt, a near-identical candidate and three prompts
    that are near-duplicates of each other."""
    data = Data(acme.organization, 2)
    with scopes_disabled():
        PromptFactory(project=data.project, external_id="again", text=data.items[0][0].prompt.text)
        same = data.items[1][1][0]
        Candidate.objects.create(
            organization=acme.organization,
            prompt=same.prompt,
            text=same.text + ".",
            content_hash="x",
        )
        for external, text in [
            ("capital-1", "What is the capital of France?"),
            ("capital-2", "What is the capital city of France?"),
        ]:
            PromptFactory(project=data.project, external_id=external, text=text)
    return data


def test_duplicates_and_near_identical_candidates(acme):
    data = _project_with_duplicates(acme)
    same = data.items[1][1][0]
    with scope(organization=acme.organization):
        report = compute_report(data.project)
    assert [sorted(g) for g in report["duplicates"]["exact_prompt_groups"]] == [["again", "p0"]]
    [near] = report["duplicates"]["near_identical_candidates"]
    assert near["similarity"] == 1.0 and same.pk in near["candidates"]


def test_an_empty_project_reports_without_numbers(acme):
    with scope(organization=acme.organization):
        report = compute_report(acme.project)
    assert report["judgments"] == 0
    assert report["agreement"]["preference"]["percent_agreement"] is None
    assert report["warnings"] == []


def test_qc_report_command_prints_the_report(acme, capsys):
    data = Data(acme.organization, 1)
    data.judge(member(acme.organization, email="c@x.org"), 0, 0)
    call_command("qc_report", f"{acme.organization.slug}/{data.project.pk}")
    out = capsys.readouterr().out
    assert "1 judgments by 1 annotators" in out and "c@x.org: 1 judgments" in out
    call_command("qc_report", f"{acme.organization.slug}/{data.project.pk}", "--json")
    assert '"judgments": 1' in capsys.readouterr().out


def test_api_computes_and_serves_the_latest_report(
    acme, globex, as_user, django_capture_on_commit_callbacks
):
    client = as_user(acme.lead)
    url = f"/api/v1/projects/{acme.project.pk}/qc-report"
    assert client.get(url).status_code == 404
    celery_app.conf.task_always_eager = True  # the job runs here (a worker is tested elsewhere)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(url)
    finally:
        celery_app.conf.task_always_eager = False
    assert response.status_code == 202
    assert client.get(response["Location"]).json()["status"] == "succeeded"
    latest = client.get(url).json()
    assert latest["data"]["project"]["id"] == acme.project.pk
    assert as_user(acme.annotator).get(url).status_code == 403
    assert client.get(f"/api/v1/projects/{globex.project.pk}/qc-report").status_code == 404


def test_dashboard_shows_the_report_with_charts_and_downloads(acme, as_user):
    data = Data(acme.organization, 2)
    a, b = (member(acme.organization, Role.ANNOTATOR, email=e) for e in ("=cmd@x.org", "b@x.org"))
    data.judge(a, 0, 0)
    data.judge(b, 0, 1)
    with scope(organization=acme.organization):
        report = QCReport.objects.create(organization=acme.organization, project=data.project)
        run_report(report.pk)
    client = as_user(acme.lead)
    page = client.get(f"/projects/{data.project.pk}/qc/").content.decode()
    # heatmap, labels, the balance of the dimension, one per dimension answer, load, timeline
    assert page.count("<svg") == 6
    assert "=cmd@x.org vs b@x.org: –" in page  # one shared item: no kappa
    assert "the guidelines are ambiguous" in page  # they disagree: Fleiss' kappa -1
    csv_text = client.get(f"/projects/{data.project.pk}/qc/report.csv").content.decode()
    assert csv_text.splitlines()[0].startswith("annotator,judgments,share_of_judgments")
    assert "'=cmd@x.org" in csv_text  # not a formula in a spreadsheet
    as_json = client.get(f"/projects/{data.project.pk}/qc/report.json").json()
    assert as_json["judgments"] == 2
    assert as_user(acme.annotator).get(f"/projects/{data.project.pk}/qc/").status_code == 403


def test_near_identical_ignores_case_and_punctuation_and_screens_by_words():
    assert near_identical("Paris is the capital.", "paris is THE capital") == 1.0
    long = " ".join(f"word{n}" for n in range(80))
    # 78 trigrams each, 3 changed on each side: 75 shared of 81
    assert near_identical(long, long.replace("word40", "other")) == pytest.approx(75 / 81)
    assert near_identical("The cat sat on the mat", "A dog ran in the park") is None


def _brute_force_groups(texts: dict, threshold: float) -> set[frozenset]:
    keys = list(texts)
    words = {k: set(split_words(texts[k])) for k in keys}
    parent = {k: k for k in keys}

    def root(k):
        while parent[k] != k:
            k = parent[k]
        return k

    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            union = words[a] | words[b]
            if union and len(words[a] & words[b]) / len(union) >= threshold:
                parent[root(a)] = root(b)
    groups = {}
    for k in keys:
        groups.setdefault(root(k), set()).add(k)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9, 1.0])
def test_near_duplicate_groups_are_exactly_the_brute_force_ones(threshold):
    rng = random.Random(threshold)
    vocab = [f"w{i}" for i in range(40)]
    texts = {}
    for n in range(250):
        if n % 5 == 0 and n:  # a variant of an earlier text: one word changed or added
            words = texts[rng.randrange(n)].split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            if rng.random() < 0.5:
                words.append(rng.choice(vocab))
            texts[n] = " ".join(words)
        else:
            texts[n] = " ".join(rng.sample(vocab, rng.randint(2, 14)))
    found = similar_groups(texts, threshold)
    assert {frozenset(g["members"]) for g in found} == _brute_force_groups(texts, threshold)
    assert all(threshold <= g["similarity"] <= 1.0 for g in found)


def test_near_duplicate_prompts_are_reported_in_groups(acme):
    data = Data(acme.organization, 1)
    with scopes_disabled():
        for external, text in [
            ("capital-1", "What is the capital of France?"),
            ("capital-2", "What is the capital city of France?"),
            ("capital-3", "What is the capital of France, please?"),  # 0.86 to capital-1
            ("photo", "Explain photosynthesis to a child."),
        ]:
            PromptFactory(project=data.project, external_id=external, text=text)
    with scope(organization=acme.organization):
        report = compute_report(data.project)
    duplicates = report["duplicates"]
    assert duplicates["prompt_similarity_threshold"] == 0.8
    # 6 shared words of 7 link 1-2 and 1-3 (2-3 share 6 of 8: linked through 1)
    assert duplicates["near_duplicate_prompt_groups"] == [
        {"prompts": ["capital-1", "capital-2", "capital-3"], "similarity": 0.8571}
    ]
    assert any("1 group(s) of near-duplicate prompts" in w for w in report["warnings"])


def test_dimension_balance_is_warned_about(acme):
    data = Data(acme.organization, 20, overlap=1)
    person = member(acme.organization, email="d@x.org")
    for n in range(20):
        data.judge(person, n, 0 if n < 15 else 1, dimension="honest" if n == 19 else "helpful")
    with scope(organization=acme.organization):
        report = compute_report(data.project)
    assert report["answers"]["dimension"] == {"helpful": 19, "honest": 1}
    assert (
        'dimension "honest" is 5% of the answers (an even share is 50%): balance the pairs '
        "across dimension." in report["warnings"]
    )
    # within "helpful": 15 of 19 picked the first candidate, always seen on the left
    assert any('When dimension is "helpful", "A is better" is 79%' in w for w in report["warnings"])


def _reads_candidate_texts(queries) -> bool:
    return any(
        '"tasks_candidate"."text"' in q["sql"] or '"tasks_prompt"."text"' in q["sql"]
        for q in queries
    )


def test_the_duplicates_section_is_reused_only_while_the_texts_stand(acme, settings):
    """A report lends the next one its duplicates section (every text of the project read
    again for nothing, the bulk of a large report) until a prompt or candidate is added or
    removed, or the similarity threshold changes."""
    data = Data(acme.organization, 3)
    with scopes_disabled():
        PromptFactory(project=data.project, external_id="again", text=data.items[0][0].prompt.text)
    annotator = member(acme.organization)
    with scope(organization=acme.organization):
        first = compute_report(data.project)
        data.judge(annotator, 0, 0)  # new judgments: the texts stand
        with CaptureQueriesContext(connection) as queries:
            second = compute_report(data.project, previous=first)
        assert not _reads_candidate_texts(queries.captured_queries)
        assert second["duplicates"] == first["duplicates"]
        assert second["judgments"] == 1

        # A new candidate that nearly repeats another is found.
        same = data.items[1][1][0]
        with scopes_disabled():
            Candidate.objects.create(
                organization=acme.organization,
                prompt=same.prompt,
                text=same.text.upper(),
                content_hash="near",
            )
        with CaptureQueriesContext(connection) as queries:
            third = compute_report(data.project, previous=second)
        assert _reads_candidate_texts(queries.captured_queries)
        [near] = third["duplicates"]["near_identical_candidates"]
        assert same.pk in near["candidates"]

        # A removed prompt takes its group with it.
        with scopes_disabled():
            data.project.prompts.get(external_id="again").delete()
        fourth = compute_report(data.project, previous=third)
        assert fourth["duplicates"]["exact_prompt_groups"] == []
        assert fourth["duplicates"]["near_identical_candidates"] == [near]

        # Another threshold is another section.
        settings.CHOSEN_QC_PROMPT_SIMILARITY = 0.3
        fifth = compute_report(data.project, previous=fourth)
        assert fifth["duplicates"]["prompt_similarity_threshold"] == 0.3
        assert fifth["duplicates"]["fingerprint"] != fourth["duplicates"]["fingerprint"]


def test_the_job_hands_the_last_report_to_the_next(acme):

    data = Data(acme.organization, 2)
    with scopes_disabled():
        PromptFactory(project=data.project, external_id="again", text=data.items[0][0].prompt.text)
    annotator = member(acme.organization)
    with scope(organization=acme.organization):
        first = run_report(request_report(data.project).pk)
        data.judge(annotator, 1, 1)
        queued = request_report(data.project)
        with CaptureQueriesContext(connection) as queries:
            second = run_report(queued.pk)
    assert not _reads_candidate_texts(queries.captured_queries)
    assert first.status == second.status == QCReport.Status.SUCCEEDED
    assert second.data["judgments"] == 1
    assert second.data["duplicates"] == first.data["duplicates"]
    assert [sorted(g) for g in second.data["duplicates"]["exact_prompt_groups"]] == [
        ["again", "p0"]
    ]


@pytest.fixture
def forks(monkeypatch):
    """The pids of the children qc.report forks, as they are forked."""
    pids = []
    fork = os.fork

    def counted_fork():
        pid = fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(qc_report.os, "fork", counted_fork)
    return pids


def test_a_large_projects_texts_are_compared_in_a_child_process(acme, monkeypatch, forks):
    """From FORK_FROM_TEXTS texts on, the duplicates are found in a forked child while the
    judgments are tallied: the same section as found in the report's own process."""
    data = _project_with_duplicates(acme)
    with scope(organization=acme.organization):
        inline = compute_report(data.project)
        assert forks == []
        monkeypatch.setattr(qc_report, "FORK_FROM_TEXTS", 1)
        child = compute_report(data.project)
    assert len(forks) == 1
    with pytest.raises(ChildProcessError):  # waited for: no zombie left
        os.waitpid(forks[0], os.WNOHANG)
    assert child["duplicates"] == inline["duplicates"]
    duplicates = child["duplicates"]
    assert [sorted(g) for g in duplicates["exact_prompt_groups"]] == [["again", "p0"]]
    assert len(duplicates["near_identical_candidates"]) == 1
    assert duplicates["near_duplicate_prompt_groups"] == [
        {"prompts": ["capital-1", "capital-2"], "similarity": 0.8571}
    ]


def test_what_the_child_process_raises_or_dies_of_fails_the_report(acme, monkeypatch):
    data = _project_with_duplicates(acme)
    monkeypatch.setattr(qc_report, "FORK_FROM_TEXTS", 1)

    def broken(texts, threshold):
        raise ValueError("no comparing today")

    monkeypatch.setattr(qc_report, "similar_groups", broken)
    with scope(organization=acme.organization), pytest.raises(ValueError, match="no comparing"):
        compute_report(data.project)

    monkeypatch.setattr(qc_report, "similar_groups", lambda texts, threshold: os._exit(3))
    with (
        scope(organization=acme.organization),
        pytest.raises(RuntimeError, match=r"comparing texts failed \(exit status 3\)"),
    ):
        compute_report(data.project)

    # The job records the failure for the person who asked, as for any other fault.
    with scope(organization=acme.organization):
        report = run_report(request_report(data.project).pk)
    assert report.status == QCReport.Status.FAILED


def test_a_report_that_fails_elsewhere_stops_its_child_process(acme, monkeypatch, forks):
    data = _project_with_duplicates(acme)

    def slow(texts, threshold):
        time.sleep(600)

    def broken_tally(project, previous=None):
        raise RuntimeError("the tally broke")

    monkeypatch.setattr(qc_report, "FORK_FROM_TEXTS", 1)
    monkeypatch.setattr(qc_report, "similar_groups", slow)
    monkeypatch.setattr(qc_report, "tally_project", broken_tally)
    started = time.monotonic()
    with scope(organization=acme.organization), pytest.raises(RuntimeError, match="tally broke"):
        compute_report(data.project)
    assert time.monotonic() - started < 60  # the child was stopped, not waited for
    assert len(forks) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(forks[0], os.WNOHANG)


def test_median_times_are_the_middle_of_each_annotators_times(acme):
    """Odd and even counts, repeated times and one judgment: the statistics module's median."""
    data = Data(acme.organization, 7, overlap=3)
    rng = random.Random(5)
    people = [member(acme.organization, email=f"t{k}@x.org") for k in range(3)]
    judged = {person.pk: [] for person in people}
    for person, count in zip(people, (7, 4, 1), strict=True):
        for n in range(count):
            data.judge(person, n, 0)
            spent = rng.choice([0, 1500, 1500, 2200, 60_000, rng.randrange(100_000)])
            with scopes_disabled():
                Judgment.objects.filter(annotator=person, item=data.items[n][0]).update(
                    time_spent_ms=spent
                )
            judged[person.pk].append(spent)
    with scope(organization=acme.organization):
        report = compute_report(data.project)
    medians = {row["annotator"]: row["median_time_ms"] for row in report["per_annotator"]}
    assert medians == {p.email: statistics.median(judged[p.pk]) for p in people}
