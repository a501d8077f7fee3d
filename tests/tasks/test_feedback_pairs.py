"""The pair builder: every rule on hand-made signals, contradictions, A/B significance,
KTO rows, rebuilding around experts' verdicts, and its doors (command, API)."""

import math
from io import StringIO

import pytest
from django.core.management import call_command
from django_scopes import scope, scopes_disabled

from tasks.feedback.pairs import ab_counts, build_pairs, grade_confidence, prob_greater
from tasks.importers.rows import candidate_hash
from tasks.models import Candidate, FeedbackSignal, Item, KTOExample, SignalPair
from tasks.text import content_hash
from tests.factories import ProjectFactory, PromptFactory, api_token

NO_AUDIT = {"audit_sample_percent": 0}


@pytest.fixture
def project(db):
    return ProjectFactory(pair_settings=NO_AUDIT)


def prompt(project, text="How do I reset my password?", messages=None):
    return PromptFactory(project=project, text=text, messages=messages)


def reply(prompt, text):
    with scopes_disabled():
        return Candidate.objects.create(
            organization=prompt.organization,
            prompt=prompt,
            text=text,
            source=Candidate.Source.FEEDBACK_LOG,
            content_hash=candidate_hash(text),
        )


def signal(prompt, kind="feedback", conversation=None, **fields):
    """A signal on ``prompt``; its conversation key is the prompt's unless given."""
    with scopes_disabled():
        return FeedbackSignal.objects.create(
            organization=prompt.organization,
            project=prompt.project,
            kind=kind,
            prompt=prompt,
            conversation_key=conversation or content_hash(prompt.text),
            **fields,
        )


def build(project):
    with scope(organization=project.organization):
        return build_pairs(project=project)


def pairs(project, **filters):
    with scopes_disabled():
        return list(SignalPair.objects.filter(project=project, **filters).order_by("id"))


def the_pair(project, **filters):
    found = pairs(project, **filters)
    assert len(found) == 1, found
    return found[0]


# --- the statistics, checked against an independent computation ---------------------------


def beta_pdf(x, a, b):
    return math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x)
    )  # fmt: skip


def beta_cdf(x, a, b):
    """Integer a, b: P(Beta(a, b) ≤ x) = P(Binomial(a + b − 1, x) ≥ a)."""
    n = a + b - 1
    return sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1))


def numeric_prob_greater(a1, b1, a2, b2, steps=4000):
    """P(X > Y) = ∫ f_X(x) F_Y(x) dx by Simpson's rule: no shared code with the builder."""
    h = 1 / steps
    total = 0.0
    for i in range(1, steps):
        x = i * h
        total += (4 if i % 2 else 2) * beta_pdf(x, a1, b1) * beta_cdf(x, a2, b2)
    return total * h / 3


def test_one_up_against_one_down_is_five_sixths():
    assert prob_greater(2, 1, 1, 2) == pytest.approx(5 / 6, abs=1e-12)


@pytest.mark.parametrize(
    "params", [(12, 10, 10, 12), (61, 41, 41, 61), (4, 2, 3, 5), (30, 3, 25, 9), (2, 2, 2, 2)]
)
def test_posterior_matches_numerical_integration(params):
    assert prob_greater(*params) == pytest.approx(numeric_prob_greater(*params), abs=1e-6)
    a1, b1, a2, b2 = params
    assert prob_greater(*params) + prob_greater(a2, b2, a1, b1) == pytest.approx(1.0)


def test_normal_approximation_takes_over_smoothly_for_huge_counts():
    exact = prob_greater(20_000, 30_000, 19_600, 30_400)
    approximate = prob_greater(20_001, 30_000, 19_601, 30_400)
    assert approximate == pytest.approx(exact, abs=2e-3)


def test_grade_confidence_grows_with_margin_and_reviewers():
    assert grade_confidence(0.5, 1, 1) > grade_confidence(0.25, 1, 1)
    assert grade_confidence(0.25, 3, 3) > grade_confidence(0.25, 1, 1)


# --- the rules ----------------------------------------------------------------------------


def test_user_edit_is_chosen_over_the_original(project):
    p = prompt(project)
    original = reply(p, "Click 'Forgot password'.")
    edited = reply(p, "Click 'Forgot password' on the sign-in page, then follow the e-mail.")
    s = signal(p, reply=original, other=edited)

    counts = build(project)

    pair = the_pair(project)
    assert (pair.chosen, pair.rejected, pair.rule) == (edited, original, "edit")
    assert pair.confidence == 0.9 and pair.status == "accepted"
    assert pair.evidence == [s.pk] and "edit" in pair.reason.lower()
    assert counts["pairs"] == {"edit": {"accepted": 1}}


def test_edit_of_case_or_spacing_only_makes_no_pair(project):
    p = prompt(project)
    signal(p, reply=reply(p, "Use the  reset link."), other=reply(p, "use the reset link. "))

    counts = build(project)

    assert pairs(project) == []
    assert counts["skipped"]["trivial_edit"] == 1


def test_edit_of_punctuation_only_goes_to_an_expert(project):
    p = prompt(project)
    signal(p, reply=reply(p, "Use the reset link"), other=reply(p, "Use the reset link!"))

    build(project)

    pair = the_pair(project)
    assert pair.confidence == 0.6 and pair.status == "to_verify"


@pytest.mark.parametrize("kept", ["regenerated_from", "other"])
def test_kept_regeneration_is_chosen_over_the_discarded_reply(project, kept):
    p = prompt(project)
    first, second = reply(p, "Try turning it off."), reply(p, "Open Settings › Security.")
    signal(p, reply=first, other=second, data={"kept": kept})

    build(project)

    pair = the_pair(project)
    assert (pair.chosen, pair.rejected, pair.rule) == (second, first, "regeneration")
    assert pair.confidence == 0.7 and pair.status == "to_verify"


def test_kept_reply_over_its_regeneration_and_unclear_kept_values(project):
    p = prompt(project)
    first, second, third = (reply(p, t) for t in ("One.", "Two, longer.", "Three, other."))
    signal(p, reply=first, other=second, data={"kept": "reply"})
    signal(p, reply=first, other=third, data={"kept": "both?"})

    counts = build(project)

    pair = the_pair(project)
    assert (pair.chosen, pair.rejected) == (first, second)
    assert counts["skipped"]["unclear_kept"] == 1


def test_thumbs_up_reply_over_thumbs_down_reply_of_the_same_prompt(project):
    p = prompt(project)
    good, bad = reply(p, "Go to Settings › Reset."), reply(p, "I cannot help.")
    up = signal(p, reply=good, thumbs=1, user_hash="u1")
    down = signal(p, reply=bad, thumbs=-1, user_hash="u2")

    build(project)

    pair = the_pair(project, rule="thumbs")
    assert (pair.chosen, pair.rejected) == (good, bad)
    assert pair.confidence == pytest.approx(5 / 6)
    assert sorted(pair.evidence) == sorted([up.pk, down.pk])
    assert "1 up / 0 down" in pair.reason and "0 up / 1 down" in pair.reason


def test_thumbs_confidence_counts_users_not_clicks(project):
    p = prompt(project)
    good, bad = reply(p, "Go to Settings › Reset."), reply(p, "I cannot help.")
    for user in ("u1", "u2", "u3"):
        signal(p, reply=good, thumbs=1, user_hash=user)
    signal(p, reply=good, thumbs=-1, user_hash="u4")
    # u5 clicked down three times, then changed their mind: one vote, up.
    for thumbs in (-1, -1, -1, 1):
        signal(p, reply=bad, thumbs=thumbs, user_hash="u5")
    for user in ("u6", "u7"):
        signal(p, reply=bad, thumbs=-1, user_hash=user)

    build(project)

    pair = the_pair(project, rule="thumbs")
    assert "3 up / 1 down" in pair.reason and "1 up / 2 down" in pair.reason
    assert pair.confidence == pytest.approx(numeric_prob_greater(4, 2, 2, 3), abs=1e-6)


def test_a_reply_with_as_many_ups_as_downs_pairs_with_nothing(project):
    p = prompt(project)
    mixed = reply(p, "Maybe.")
    signal(p, reply=mixed, thumbs=1, user_hash="a")
    signal(p, reply=mixed, thumbs=-1, user_hash="b")

    build(project)

    assert pairs(project) == []


def test_thumbs_of_the_same_last_turn_after_different_histories_do_not_pair(project):
    first = [{"role": "user", "content": "I use Windows."}]
    second = [{"role": "user", "content": "I use a Mac."}]
    # The importer keeps one prompt per whole conversation; the last turns are the same.
    on_windows = prompt(project, "How do I take a screenshot?", messages=first)
    on_mac = prompt(project, "How do I take a screenshot?", messages=second)
    signal(on_windows, reply=reply(on_windows, "Press Win+Shift+S."), thumbs=1, conversation="w")
    signal(on_mac, reply=reply(on_mac, "Press Win+Shift+S."), thumbs=-1, conversation="m")
    # Even filed under one prompt, different conversation keys keep them apart.
    one = prompt(project, "And a recording?")
    signal(one, reply=reply(one, "Use Xbox Game Bar."), thumbs=1, conversation="k1")
    signal(one, reply=reply(one, "Use QuickTime."), thumbs=-1, conversation="k2")

    build(project)

    assert pairs(project, rule="thumbs") == []


def test_thumbs_pairs_per_conversation_are_capped(project):
    p = prompt(project)
    for i in range(7):
        signal(p, reply=reply(p, f"Good answer {i}."), thumbs=1)
        signal(p, reply=reply(p, f"Bad answer {i}."), thumbs=-1)

    counts = build(project)

    assert len(pairs(project, rule="thumbs")) == 25
    assert counts["skipped"]["capped"] == 49 - 25


def test_insignificant_ab_test_makes_no_pair(project):
    p = prompt(project)
    a, b = reply(p, "Variant A."), reply(p, "Variant B.")
    data = {"wins_a": 11, "wins_b": 9, "impressions_a": 20, "impressions_b": 20}
    signal(p, kind="ab_test", reply=a, other=b, data=data)

    counts = build(project)

    assert pairs(project) == []
    assert counts["skipped"]["not_significant"] == 1


def test_significant_ab_test_pairs_the_winner_with_its_posterior(project):
    p = prompt(project)
    a, b = reply(p, "Variant A."), reply(p, "Variant B.")
    data = {"wins_a": 40, "wins_b": 60, "impressions_a": 100, "impressions_b": 100}
    s = signal(p, kind="ab_test", reply=a, other=b, data=data)

    build(project)

    pair = the_pair(project)
    assert (pair.chosen, pair.rejected, pair.rule) == (b, a, "ab_test")
    expected = numeric_prob_greater(61, 41, 41, 61)
    assert expected == pytest.approx(0.9976, abs=1e-4)
    assert pair.confidence == pytest.approx(expected, abs=1e-6)
    assert pair.evidence == [s.pk] and "60 of 100" in pair.reason


def test_ab_winner_column_is_one_vote_and_votes_add_up(project):
    p, q = prompt(project), prompt(project, "Second question?")
    signal(p, kind="ab_test", reply=reply(p, "A."), other=reply(p, "B."), data={"winner": "a"})
    a, b = reply(q, "A."), reply(q, "B.")
    for _ in range(8):
        signal(q, kind="ab_test", reply=a, other=b, data={"winner": "B"})

    counts = build(project)

    pair = the_pair(project)  # the single vote (5/6) is below ab_confidence
    assert (pair.chosen, pair.rejected) == (b, a)
    assert pair.confidence == pytest.approx(prob_greater(9, 1, 1, 9))
    assert counts["skipped"]["not_significant"] == 1


@pytest.mark.parametrize(
    "data",
    [
        {"wins_a": 30, "wins_b": 1, "impressions_a": 20, "impressions_b": 20},
        {"wins_a": -3, "wins_b": 1},
        {"wins_a": "many", "wins_b": 1},
        {"wins_a": True, "wins_b": 1},
        {"wins_a": 3, "wins_b": 1, "impressions_a": 10},
        {"winner": "c"},
        [],
    ],
)
def test_impossible_ab_counts_are_refused(data):
    assert ab_counts(data) is None


def test_graded_outputs_pair_by_margin(project):
    p = prompt(project)
    best, good, poor = reply(p, "Best."), reply(p, "Good."), reply(p, "Poor.")
    signal(p, kind="grade", reply=best, score=1.0, user_hash="r1")
    signal(p, kind="grade", reply=best, score=1.0, user_hash="r2")
    signal(p, kind="grade", reply=good, score=0.875, user_hash="r1")
    signal(p, kind="grade", reply=poor, score=0.25, user_hash="r1")

    build(project)

    found = {(x.chosen, x.rejected): x for x in pairs(project, rule="grade")}
    assert set(found) == {(best, poor), (good, poor)}  # best vs good: 0.125 < 0.25
    assert found[(best, poor)].confidence == pytest.approx(grade_confidence(0.75, 2, 1))
    assert found[(best, poor)].confidence > found[(good, poor)].confidence
    assert "mean of 2 reviewers" in found[(best, poor)].reason


def test_correction_is_chosen_over_the_original(project):
    p = prompt(project)
    wrong, right = reply(p, "Paris is in Italy."), reply(p, "Paris is in France.")
    signal(p, kind="correction", reply=wrong, other=right)

    build(project)

    pair = the_pair(project)
    assert (pair.chosen, pair.rejected, pair.rule) == (right, wrong, "correction")
    assert pair.confidence == 0.95 and pair.status == "accepted"


def test_opposite_signals_mark_both_pairs_contradicted(project):
    p = prompt(project)
    a, b = reply(p, "Reply A."), reply(p, "Reply B.")
    signal(p, reply=a, other=b, data={"kept": "reply"})  # a over b
    signal(p, reply=b, thumbs=1)
    signal(p, reply=a, thumbs=-1)  # b over a
    c = reply(p, "Reply C.")
    signal(p, kind="correction", reply=c, other=reply(p, "Reply C, corrected."))

    counts = build(project)

    regeneration, thumbs = the_pair(project, rule="regeneration"), the_pair(project, rule="thumbs")
    assert regeneration.status == thumbs.status == "contradicted"
    assert "thumbs-up reply over a thumbs-down reply" in regeneration.reason.lower()
    assert "kept regeneration" in thumbs.reason.lower()
    assert the_pair(project, rule="correction").status == "accepted"
    assert counts["pairs"]["thumbs"] == {"contradicted": 1}


def test_audit_sample_is_deterministic_and_follows_the_percentage(project):
    p = prompt(project)
    for i in range(40):
        signal(p, kind="correction", reply=reply(p, f"Old {i}."), other=reply(p, f"New {i}!"))
    project.pair_settings = {"audit_sample_percent": 50}
    project.save()

    build(project)
    first = {x.pk: x.status for x in pairs(project)}
    build(project)

    assert {x.pk: x.status for x in pairs(project)} == first
    audited = [x for x in pairs(project) if x.status == "to_verify"]
    assert 8 <= len(audited) <= 32
    assert all("audit" in x.reason for x in audited)
    project.pair_settings = {"audit_sample_percent": 100}
    project.save()
    assert build(project)["pairs"] == {"correction": {"to_verify": 40}}


# --- KTO rows ------------------------------------------------------------------------------


def test_single_thumbs_ratings_and_complaints_become_kto_rows(project):
    p = prompt(project)
    cases = {
        "up": ({"thumbs": 1}, True, 0.8, "thumbs"),
        "down": ({"thumbs": -1}, False, 0.8, "thumbs"),
        "rated 5": ({"score": 1.0}, True, 1.0, "rating"),
        "rated 4": ({"score": 0.75}, True, 0.6, "rating"),
        "rated 1": ({"score": 0.0}, False, 1.0, "rating"),
        "complaint": ({"complaint": True}, False, 0.9, "rating"),
        "down and complaint": ({"thumbs": -1, "complaint": True}, False, 0.9, "thumbs"),
    }
    made = {name: signal(p, reply=reply(p, name), **fields) for name, (fields, *_) in cases.items()}
    signal(p, reply=reply(p, "rated 3"), score=0.5)
    signal(p, reply=reply(p, "up, but a complaint"), thumbs=1, complaint=True)
    signal(p, reply=reply(p, "no signal at all"))

    counts = build(project)

    with scopes_disabled():
        rows = {k.signal_id: k for k in KTOExample.objects.filter(project=project)}
    assert set(rows) == {s.pk for s in made.values()}
    for name, (_, desirable, confidence, rule) in cases.items():
        row = rows[made[name].pk]
        assert (row.desirable, row.rule, row.candidate_id) == (desirable, rule, made[name].reply_id)
        assert row.confidence == pytest.approx(confidence), name
    assert counts["kto"] == {"desirable": 3, "undesirable": 4}
    assert counts["skipped"]["kto_in_between"] == 1
    assert counts["skipped"]["kto_conflicting"] == 1


def test_kto_rows_follow_changed_thresholds(project):
    p = prompt(project)
    signal(p, reply=reply(p, "Fine."), score=0.5)
    assert build(project)["kto"] == {"desirable": 0, "undesirable": 0}

    project.pair_settings = {**NO_AUDIT, "kto_desirable": 0.5}
    project.save()
    assert build(project)["kto"] == {"desirable": 1, "undesirable": 0}
    project.pair_settings = NO_AUDIT
    project.save()
    assert build(project)["kto"] == {"desirable": 0, "undesirable": 0}


# --- rebuilding ----------------------------------------------------------------------------


def test_rebuild_keeps_expert_verdicts_and_adds_new_pairs(project):
    p = prompt(project)
    replies = [reply(p, f"Reply {i}.") for i in range(8)]
    for i in range(0, 6, 2):
        signal(p, reply=replies[i], other=replies[i + 1], data={"kept": "reply"})
    build(project)
    confirmed, flipped, rejected = pairs(project)
    with scopes_disabled():
        item = Item.objects.create(
            organization=project.organization,
            project=project,
            prompt=p,
            mode="pairwise",
            candidate_key=f"{replies[0].pk}-{replies[1].pk}",
        )
    for pair, status in ((confirmed, "confirmed"), (flipped, "flipped"), (rejected, "rejected")):
        SignalPair.objects.with_scopes_disabled().filter(pk=pair.pk).update(
            status=status, item=item
        )
    signal(p, reply=replies[6], other=replies[7], data={"kept": "reply"})

    counts = build(project)

    after = {x.pk: x for x in pairs(project)}
    assert [after[x.pk].status for x in (confirmed, flipped, rejected)] == [
        "confirmed",
        "flipped",
        "rejected",
    ]
    assert all(after[x.pk].item == item for x in (confirmed, flipped, rejected))
    assert counts["changes"] == {"created": 1, "updated": 0, "removed": 0}
    assert counts["pairs"]["regeneration"] == {
        "confirmed": 1,
        "flipped": 1,
        "rejected": 1,
        "to_verify": 1,
    }
    assert build(project)["changes"] == {"created": 0, "updated": 0, "removed": 0}


def test_new_signal_against_an_expert_verdict_is_contradicted(project):
    p = prompt(project)
    a, b = reply(p, "Reply A."), reply(p, "Reply B.")
    signal(p, reply=a, other=b, data={"kept": "reply"})
    build(project)
    SignalPair.objects.with_scopes_disabled().update(status="confirmed")
    signal(p, kind="correction", reply=a, other=b)  # b over a

    build(project)

    correction = the_pair(project, rule="correction")
    assert correction.status == "contradicted"
    assert "experts who confirmed" in correction.reason


def test_rebuild_reevaluates_machine_pairs_with_new_settings(project):
    p = prompt(project)
    high, low = reply(p, "High."), reply(p, "Low.")
    signal(p, kind="grade", reply=high, score=0.5)
    signal(p, kind="grade", reply=low, score=0.25)
    build(project)
    assert the_pair(project).status == "to_verify"

    project.pair_settings = {**NO_AUDIT, "verify_below": 0.5}
    project.save()
    assert build(project)["changes"] == {"created": 0, "updated": 1, "removed": 0}
    assert the_pair(project).status == "accepted"

    project.pair_settings = {**NO_AUDIT, "grade_margin": 0.5}
    project.save()
    assert build(project)["changes"]["removed"] == 1
    assert pairs(project) == []


def test_signals_naming_another_prompts_reply_make_nothing(project):
    p, q = prompt(project), prompt(project, "Another question?")
    signal(p, reply=reply(p, "Mine."), other=reply(q, "Someone else's."))
    signal(p, kind="grade", reply=reply(q, "Graded elsewhere."), score=1.0)
    signal(p, kind="grade", reply=reply(p, "Graded here."), score=0.0)

    build(project)

    assert pairs(project) == []


# --- the doors -----------------------------------------------------------------------------


def test_command_prints_the_counts_table(project):
    p = prompt(project)
    signal(p, kind="correction", reply=reply(p, "Old."), other=reply(p, "New."))
    signal(p, reply=reply(p, "Liked."), thumbs=1)
    out = StringIO()

    call_command("build_pairs", f"{project.organization.slug}/{project.pk}", stdout=out)

    text = out.getvalue()
    assert "correction" in text and "accepted" in text
    assert "KTO rows: 1 desirable, 0 undesirable" in text
    assert "This run: 1 pairs added" in text


def _seed(tenant):
    with scopes_disabled():
        tenant.project.pair_settings = NO_AUDIT
        tenant.project.save()
    p = prompt(tenant.project)
    signal(p, kind="correction", reply=reply(p, "Old."), other=reply(p, "New."))
    signal(p, reply=reply(p, "Fine."), other=reply(p, "Fine!"), data={})


def test_lead_builds_and_lists_pairs_through_the_api(acme, as_user):
    _seed(acme)
    client = as_user(acme.lead)
    base = f"/api/v1/projects/{acme.project.pk}/signal-pairs"

    built = client.post(f"{base}/build")

    assert built.status_code == 200
    assert built.json()["pairs"] == {"correction": {"accepted": 1}, "edit": {"to_verify": 1}}
    listed = client.get(base).json()["results"]
    assert {(x["rule"], x["chosen_text"], x["rejected_text"]) for x in listed} == {
        ("correction", "New.", "Old."),
        ("edit", "Fine!", "Fine."),
    }
    assert [x["rule"] for x in client.get(f"{base}?status=to_verify").json()["results"]] == ["edit"]
    assert [x["rule"] for x in client.get(f"{base}?min_confidence=0.9").json()["results"]] == [
        "correction"
    ]
    assert client.get(f"{base}?rule=edit&status=accepted").json()["results"] == []
    assert client.get(f"{base}?rule=nonsense").status_code == 400
    assert client.get(f"{base}?min_confidence=high").status_code == 400


def test_token_may_build_but_annotators_may_not(acme, as_user, client):
    _seed(acme)
    url = f"/api/v1/projects/{acme.project.pk}/signal-pairs"

    assert as_user(acme.annotator).post(f"{url}/build").status_code == 403
    assert as_user(acme.annotator).get(url).status_code == 403
    assert pairs(acme.project) == []
    token = api_token(acme.organization)[1]
    response = client.post(f"{url}/build", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and len(pairs(acme.project)) == 2


def test_another_organizations_project_is_404_and_left_alone(acme, globex, as_user):
    _seed(globex)
    client = as_user(acme.lead)
    url = f"/api/v1/projects/{globex.project.pk}/signal-pairs"

    assert client.post(f"{url}/build").status_code == 404
    assert client.get(url).status_code == 404
    assert pairs(globex.project) == []


def test_admin_lists_pairs_of_the_own_organization_only(acme, globex, as_user):
    for tenant in (acme, globex):
        _seed(tenant)
        build(tenant.project)
    client = as_user(acme.lead)

    page = client.get("/admin/tasks/signalpair/?rule__exact=correction")
    other = pairs(globex.project)[0]

    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert client.get(f"/admin/tasks/signalpair/{other.pk}/change/").status_code == 404
    assert client.get("/admin/tasks/ktoexample/").status_code == 200
