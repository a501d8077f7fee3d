"""The AI judge: both orders x k samples against a fake endpoint that answers by a rule,
the figures those rules must produce, routing on hand-made items, resuming, faults, and who
may see and start what. The real SmolLM2 model is in test_judge_real_model.py."""

import json
import re
import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation import judge
from annotation.allocator import next_assignment
from annotation.models import JudgeConfig, JudgeDecision, JudgeRun, JudgeVerdict
from tasks.items import insert_items
from tasks.models import AuditEvent, Candidate, Item, LLMEndpoint, Role
from tests.factories import ProjectFactory, PromptFactory, member
from tests.fake_llm import INTERNAL_BODY, LocalServer, QuietHandler

# A template the fake server can read back: one line per part.
TEMPLATE = "Guide: {guidelines}\nPrompt: {prompt}\n1: {response_1}\n2: {response_2}\nVerdict?"


class RuleLLM(LocalServer):
    """An OpenAI-compatible server whose reply is ``rule(response_1, response_2, seed)``;
    ``mode`` "500" answers every request with a server error and an internal body.
    ``asked`` lists (response_1, response_2, seed) of every chat request."""

    def __init__(self, rule, mode: str = "ok"):
        self.rule, self.mode, self.asked = rule, mode, []
        self.lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.mode == "500":
                    return self._send(500, INTERNAL_BODY.encode(), "text/plain")
                text = request["messages"][-1]["content"]
                one = re.search(r"^1: (.*)$", text, re.M).group(1)
                two = re.search(r"^2: (.*)$", text, re.M).group(1)
                with fake.lock:
                    fake.asked.append((one, two, request["seed"]))
                reply = fake.rule(one, two, request["seed"])
                body = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                        }
                    ],
                }
                return self._send(200, json.dumps(body).encode())

        self.serve(Handler)


def always_first(one, two, seed):
    return "Response 1 reads better.\nVerdict: 1"


def always_longer(one, two, seed):
    return f"The longer one.\nVerdict: {1 if len(one) > len(two) else 2}"


def good_wins(one, two, seed):
    """Picks the response with GOOD in it: right on every gold item below."""
    return f"It says GOOD.\nVerdict: {1 if 'GOOD' in one else 2}"


@pytest.fixture
def serve():
    servers = []

    def start(rule, **kwargs):
        server = RuleLLM(rule, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def fast_retries(settings):
    settings.CHOSEN_LLM_BACKOFF_SECONDS = 0.01
    settings.CHOSEN_LLM_RETRIES = 1


def endpoint(url, **fields):
    return LLMEndpoint.objects.create(
        name=fields.pop("name", f"judge {url}"),
        base_url=url,
        model="fake-judge",
        all_organizations=fields.pop("all_organizations", True),
        timeout_seconds=5,
        max_concurrent_requests=2,
        **fields,
    )


def make_pairs(project, texts, *, gold=()):
    """An item per (first text, second text), the first candidate created first (lower id);
    ``gold``: indexes of items whose gold answer is the candidate with GOOD in it."""
    items = []
    with scopes_disabled():
        for n, (one, two) in enumerate(texts):
            prompt = PromptFactory(project=project, external_id=f"q{n}", text=f"Question {n}")
            pair = [
                Candidate.objects.create(
                    organization=project.organization, prompt=prompt, text=t, content_hash=f"{n}{t}"
                )
                for t in (one, two)
            ]
            (item_id,) = insert_items(project, [(prompt.pk, (pair[0].pk, pair[1].pk))])
            item = Item.objects.get(pk=item_id)
            if n in gold:
                item.gold, item.gold_outcome = True, "preferred"
                item.gold_chosen = pair[0] if "GOOD" in pair[0].text else pair[1]
                item.save()
            items.append(item)
    return items


def configure(project, url, **fields):
    settings = {"prompt_template": TEMPLATE, "samples_per_order": 2, "temperature": 0.0}
    with scope(organization=project.organization):
        return judge.configure(
            project=project, endpoint_id=endpoint(url).pk, **{**settings, **fields}
        )


def judged(project) -> JudgeRun:
    """Start a run and work it here (the worker's job body)."""
    with scope(organization=project.organization):
        run = judge.start_run(project=project)
        return judge.run(run.pk)


def decisions(run):
    with scopes_disabled():
        return {d.item_id: d for d in JudgeDecision.objects.filter(run=run)}


@pytest.fixture
def project(acme):
    return ProjectFactory(organization=acme.organization, annotations_per_item=2)


# --- both orders, k samples, and the figures the rules must give -------------------------------


def test_every_item_is_asked_in_both_orders_k_times_with_seeds(project, serve):
    server = serve(always_first)
    make_pairs(project, [("alpha", "beta"), ("gamma", "delta")])
    configure(project, server.url, samples_per_order=3)
    run = judged(project)
    assert run.status == JudgeRun.Status.SUCCEEDED, run.error
    assert (run.total, run.done, run.unparsed) == (12, 12, 0)
    asked = sorted(server.asked)
    expected = sorted(
        (one, two, seed)
        for a, b in [("alpha", "beta"), ("gamma", "delta")]
        for one, two in [(a, b), (b, a)]
        for seed in (1, 2, 3)
    )
    assert asked == expected
    with scopes_disabled():
        assert JudgeVerdict.objects.filter(run=run).count() == 12
        verdict = JudgeVerdict.objects.filter(run=run, order="BA").first()
        assert verdict.chosen.text in ("beta", "delta")  # Response 1 of BA is the second
        assert verdict.rationale == "Response 1 reads better."


def test_a_judge_that_always_picks_the_first_shown_flips_on_every_item(project, serve):
    server = serve(always_first)
    make_pairs(project, [("a", "bb"), ("ccc", "d"), ("ee", "ff")])
    configure(project, server.url)
    run = judged(project)
    assert run.figures["flip_rate"] == 1.0
    for decision in decisions(run).values():
        assert decision.flipped and decision.outcome == "tie" and decision.margin == 0
        assert decision.routed_to_humans
        assert "flips with order" in decision.route_reason


def test_a_judge_that_always_picks_the_longer_has_length_bias_one_half(project, serve):
    server = serve(always_longer)
    items = make_pairs(project, [("short", "much longer"), ("a longer one", "tiny")])
    configure(project, server.url)
    run = judged(project)
    assert run.figures["length_bias"] == 0.5
    assert run.figures["flip_rate"] == 0.0
    found = decisions(run)
    with scopes_disabled():
        assert found[items[0].pk].chosen.text == "much longer"
        assert found[items[1].pk].chosen.text == "a longer one"
    assert all(d.margin == 1.0 and not d.flipped for d in found.values())


def test_a_judge_right_on_gold_is_trusted_and_its_sure_items_leave_the_human_queue(
    project, serve, acme
):
    server = serve(good_wins)
    texts = [("GOOD one", "bad one"), ("meh", "GOOD two"), ("GOOD three", "nope"), ("x", "GOOD")]
    items = make_pairs(project, texts, gold={3})
    configure(project, server.url, routing=True, audit_percent=0)
    run = judged(project)
    assert run.figures["gold_accuracy"] == 1.0 and run.figures["gold_items"] == 1
    with scopes_disabled():
        targets = {item.pk: Item.objects.get(pk=item.pk).target_annotations for item in items}
    assert [targets[item.pk] for item in items[:3]] == [0, 0, 0]
    assert targets[items[3].pk] == 2  # a gold item is never lowered (served as a check)
    with scope(organization=acme.organization):
        served = next_assignment(project=project, annotator=acme.annotator)
    assert served.assignment is None and served.reason == "done"


# --- routing, exactly, on hand-made items ---------------------------------------------------------


def succeeded_run(project) -> JudgeRun:
    """A finished run with no verdicts, for decisions made by hand."""
    with scopes_disabled():
        return JudgeRun.objects.create(
            organization=project.organization,
            project=project,
            endpoint=LLMEndpoint.objects.get(),
            model="fake-judge",
            status="succeeded",
            finished_at="2030-01-01T00:00:00Z",
        )


def hand_made(run, items, config_fields):
    """Decisions set by hand on a succeeded run, then routed."""
    with scopes_disabled():
        for item, fields in items:
            JudgeDecision.objects.create(
                organization=run.organization,
                run=run,
                item=item,
                outcome=fields.pop("outcome", "preferred"),
                **fields,
            )
        JudgeConfig.objects.filter(project=run.project).update(**config_fields)
    with scope(organization=run.organization):
        judge.route(run.project)


def test_routing_sends_flips_low_margins_and_gold_disagreements_to_people(project, serve, acme):
    server = serve(always_first)
    items = make_pairs(project, [(f"a{n}", f"b{n}") for n in range(6)], gold={5})
    configure(project, server.url)
    run = succeeded_run(project)
    hand_made(
        run,
        [
            (items[0], {"margin": 1.0, "flipped": True}),
            (items[1], {"margin": 0.25}),
            (items[2], {"margin": 1.0}),
            (items[3], {"margin": 0.75}),
            (items[4], {"margin": 1.0, "outcome": "tie"}),
            (items[5], {"margin": 1.0, "agrees_with_gold": False}),
        ],
        {"routing": True, "margin_threshold": 0.5, "audit_percent": 0},
    )
    found = decisions(run)
    reasons = [found[item.pk].route_reason for item in items]
    assert reasons == [
        "flips with order",
        "low margin",
        "",
        "",
        "no preference",
        "disagrees with gold",
    ]
    with scopes_disabled():
        targets = [Item.objects.get(pk=item.pk).target_annotations for item in items]
    assert targets == [2, 2, 0, 0, 2, 2]
    # The allocator serves the routed items only.
    with scope(organization=acme.organization):
        served = set()
        for _ in range(5):
            allocation = next_assignment(project=project, annotator=acme.annotator)
            if allocation.assignment is None:
                break
            served.add(allocation.assignment.item_id)
            allocation.assignment.status = "submitted"
            allocation.assignment.save()
    assert served == {items[0].pk, items[1].pk, items[4].pk}
    # Routing turned off: every lowered item wants its annotations again.
    with scope(organization=acme.organization):
        config = judge.config_of(project)
        judge.configure(
            project=project,
            endpoint_id=config.endpoint_id,
            routing=False,
        )
    with scopes_disabled():
        assert [Item.objects.get(pk=i.pk).target_annotations for i in items] == [2] * 6


def test_the_audit_share_is_a_stable_draw_of_about_the_set_share(project, serve, acme):
    server = serve(always_first)
    items = make_pairs(project, [(f"a{n}", f"b{n}") for n in range(200)])
    configure(project, server.url)
    run = succeeded_run(project)
    hand_made(
        run,
        [(item, {"margin": 1.0}) for item in items],
        {"routing": True, "margin_threshold": 0.5, "audit_percent": 20},
    )
    audited = {pk for pk, d in decisions(run).items() if d.route_reason == "audit sample"}
    assert 24 <= len(audited) <= 56  # 20% of 200, within about 3 standard deviations
    with scopes_disabled():
        lowered = set(
            Item.objects.filter(project=project, target_annotations=0).values_list("pk", flat=True)
        )
    assert lowered == {item.pk for item in items} - audited
    assert audited == {i.pk for i in items if judge.audited(project.pk, i.pk, 20)}


def test_a_new_run_that_sends_an_item_back_to_people_restores_its_target(project, serve):
    # First a judge that names the same text in both orders (sure), then one that flips.
    server = serve(lambda one, two, seed: f"x\nVerdict: {1 if one == 'same' else 2}")
    items = make_pairs(project, [("same", "other")])
    configure(project, server.url, routing=True, audit_percent=0, samples_per_order=1)
    judged(project)
    with scopes_disabled():
        assert Item.objects.get(pk=items[0].pk).target_annotations == 0
    server.rule = always_first
    judged(project)
    with scopes_disabled():
        assert Item.objects.get(pk=items[0].pk).target_annotations == 2


# --- resuming, unparsable replies, faults -------------------------------------------------------


def test_a_resumed_run_asks_only_for_the_missing_verdicts(project, serve):
    server = serve(always_longer)
    make_pairs(project, [("a", "bb"), ("ccc", "d")])
    configure(project, server.url)
    with scope(organization=project.organization):
        run = judge.start_run(project=project)
        # An earlier attempt stored 5 of the 8 verdicts before its worker died.
        pieces = judge._work(run, judge._pairs(run))
        for pair, order, sample in pieces[:5]:
            judge._store(run, pair, order, sample, "kept\nVerdict: 1")
        run = judge.run(run.pk)
    assert run.status == JudgeRun.Status.SUCCEEDED, run.error
    shown = {
        "AB": lambda p: (p.first.text, p.second.text),
        "BA": lambda p: (p.second.text, p.first.text),
    }
    missing = [(*shown[order](pair), sample) for pair, order, sample in pieces[5:]]
    assert sorted(server.asked) == sorted(missing) and len(missing) == 3
    assert (run.done, run.total) == (8, 8)
    # A verdict asked twice (two workers) is stored and counted once.
    with scope(organization=project.organization):
        judge._store(run, pieces[0][0], pieces[0][1], pieces[0][2], "again\nVerdict: 2")
        run.refresh_from_db()
        assert run.done == 8 and JudgeVerdict.objects.filter(run=run).count() == 8


def test_unparsable_replies_are_counted_not_guessed(project, serve):
    replies = iter(["I like 1 better", "Verdict: 1", "Verdict: maybe", "1"] * 10)
    server = serve(lambda one, two, seed: next(replies))
    make_pairs(project, [("a", "b")])
    configure(project, server.url)
    run = judged(project)
    assert run.status == JudgeRun.Status.SUCCEEDED
    assert (run.done, run.unparsed) == (4, 3)
    assert run.figures["unparsed_share"] == 0.75


@pytest.mark.parametrize(
    ("reply", "read"),
    [
        ("Because.\nVerdict: 2", "2"),
        ("Because.\n**Verdict:** tie.", "tie"),
        ("verdict: 1\n\n", "1"),
        ("Verdict: 1\nActually no.", None),
        ("Verdict: 3", None),
        ("Verdict: 1 or 2", None),
        ("", None),
    ],
)
def test_the_verdict_line_is_read_strictly(reply, read):
    assert judge.parse_reply(reply)[0] == read


def test_placeholders_are_filled_once_and_nothing_else_is_evaluated(project):
    prompt = PromptFactory.build(text="What is {response_2}?", messages=None)
    text = judge.render_prompt(
        "{prompt} | {response_1} | {response_2} | {prompt.__class__} | {unknown}",
        project,
        prompt,
        "one",
        "two {guidelines}",
    )
    assert text == "What is {response_2}? | one | two {guidelines} | {prompt.__class__} | {unknown}"


def test_endpoint_down_fails_the_run_with_a_clear_message_and_no_body(project, serve, fast_retries):
    server = serve(always_first, mode="500")
    make_pairs(project, [("a", "b")])
    configure(project, server.url)
    run = judged(project)
    assert run.status == JudgeRun.Status.FAILED
    assert run.error.startswith(
        "The judge's endpoint failed: The LLM server answered with a server error (HTTP 500)."
    )
    assert "0 of 4 verdicts are stored" in run.error
    assert INTERNAL_BODY not in run.error and "hunter2" not in run.error
    # Back up: the failed run is queued again and asks for what it lacks.
    server.mode = "ok"
    with scope(organization=project.organization):
        assert judge.resume_run(run)
        run = judge.run(run.pk)
    assert run.status == JudgeRun.Status.SUCCEEDED and run.done == 4


# --- configuration, tenancy and roles -----------------------------------------------------------


def test_an_endpoint_not_enabled_for_the_organization_is_refused(project, serve, globex):
    server = serve(always_first)
    private = endpoint(server.url, name="globex only", all_organizations=False)
    private.organizations.add(globex.organization)
    with scope(organization=project.organization), pytest.raises(ValidationError) as refused:
        judge.configure(project=project, endpoint_id=private.pk)
    assert "endpoint" in refused.value.message_dict


def test_a_template_without_the_responses_is_refused(project, serve):
    server = serve(always_first)
    with pytest.raises(ValidationError) as refused:
        configure(project, server.url, prompt_template="Judge {prompt}")
    assert "{response_1}, {response_2}" in str(refused.value)


def test_only_leads_see_and_run_the_judge_and_other_organizations_get_404(
    project, serve, acme, globex, as_user
):
    server = serve(always_first)
    make_pairs(project, [("<b>bold</b>", "plain")])
    configure(project, server.url)
    run = judged(project)
    page = reverse("annotation:judge", args=[project.pk])
    assert as_user(acme.annotator).get(page).status_code == 403
    assert (
        as_user(acme.annotator).post(reverse("annotation:judge_run", args=[project.pk])).status_code
        == 403
    )
    assert as_user(globex.lead).get(page).status_code == 404
    assert (
        as_user(globex.lead).post(reverse("annotation:judge_run", args=[project.pk])).status_code
        == 404
    )
    shown = as_user(acme.lead).get(page)
    assert shown.status_code == 200
    assert b"Response 1 reads better." in shown.content
    api = f"/api/v1/projects/{project.pk}/judge"
    assert as_user(acme.annotator).get(api).status_code == 403
    assert as_user(globex.lead).get(api).status_code == 404
    assert as_user(globex.lead).post(api).status_code == 404
    answer = as_user(acme.lead).get(api).json()
    assert answer["runs"][0]["id"] == run.pk and answer["status"] == "succeeded"
    assert answer["config"]["samples_per_order"] == 2
    assert answer["runs"][0]["figures"]["flip_rate"] == 1.0
    # The annotator's own pages never show the judge.
    with scope(organization=acme.organization):
        allocation = next_assignment(project=project, annotator=acme.annotator)
    assert allocation.assignment is not None
    annotate = as_user(acme.annotator).get(reverse("annotation:annotate", args=[project.pk]))
    assert b"Verdict" not in annotate.content and b"reads better" not in annotate.content


def test_the_lead_starts_a_run_through_the_api(project, serve, acme, as_user):
    server = serve(always_first)
    make_pairs(project, [("a", "b")])
    configure(project, server.url)
    answer = as_user(acme.lead).post(f"/api/v1/projects/{project.pk}/judge")
    assert answer.status_code == 202, answer.content
    with scopes_disabled():
        run = JudgeRun.objects.get()
    assert answer.json()["id"] == run.pk and run.total == 4


def test_the_api_says_when_there_is_no_judge(project, acme, as_user):
    answer = as_user(acme.lead).post(f"/api/v1/projects/{project.pk}/judge")
    assert answer.status_code == 400
    assert "Configure the judge first." in json.dumps(answer.json())


def test_rationales_are_shown_escaped(project, serve, acme, as_user):
    server = serve(lambda one, two, seed: "<script>alert(1)</script>\nVerdict: 1")
    make_pairs(project, [("a", "b")])
    configure(project, server.url)
    judged(project)
    page = as_user(acme.lead).get(reverse("annotation:judge", args=[project.pk]))
    assert b"<script>alert(1)</script>" not in page.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page.content


def test_judge_decided_pairs_need_routing_and_the_leads_consent(project, serve):
    server = serve(good_wins)
    items = make_pairs(project, [("GOOD", "bad"), ("worse", "GOOD too")], gold={1})
    configure(project, server.url, routing=True, audit_percent=0)
    run = judged(project)
    with scope(organization=project.organization):
        assert list(judge.judge_decided_pairs(project)) == []
        JudgeConfig.objects.filter(project=project).update(include_in_exports=True)
        pairs = list(judge.judge_decided_pairs(project))
    assert len(pairs) == 1  # the gold item is a check, never a judge-decided pair
    (pair,) = pairs
    with scopes_disabled():
        assert pair.item == items[0] and Candidate.objects.get(pk=pair.chosen_id).text == "GOOD"
    assert pair.margin == 1.0 and pair.run == run


def test_another_organizations_lead_cannot_start_a_run_and_annotators_cannot_configure(
    project, serve, acme, as_user
):
    server = serve(always_first)
    url = reverse("annotation:judge", args=[project.pk])
    ep = endpoint(server.url)
    answer = as_user(acme.annotator).post(url, {"endpoint": ep.pk})
    assert answer.status_code == 403
    with scopes_disabled():
        assert not JudgeConfig.objects.exists()
    lead = member(acme.organization, Role.LEAD)
    answer = as_user(lead).post(
        url,
        {
            "endpoint": ep.pk,
            "prompt_template": TEMPLATE,
            "samples_per_order": 2,
            "temperature": 0.5,
            "max_tokens": 64,
            "margin_threshold": 0.5,
            "audit_percent": 10,
        },
    )
    assert answer.status_code == 302
    with scopes_disabled():
        assert JudgeConfig.objects.get().samples_per_order == 2


def test_the_trail_keeps_the_judges_set_up_and_its_runs(project, serve):
    server = serve(good_wins)
    make_pairs(project, [("GOOD", "bad")])
    configure(project, server.url, routing=True, audit_percent=0)
    run = judged(project)
    with scopes_disabled():
        events = {e.action: e for e in AuditEvent.objects.filter(organization=project.organization)}
    set_up = events["judge.configured"]
    assert set_up.data["routing"] is True and set_up.data["samples_per_order"] == 2
    assert set_up.data["endpoint"].startswith("judge http://127.0.0.1")
    assert events["judge_run.created"].object_id == str(run.pk)
    assert events["judge_run.succeeded"].data["project"] == project.pk
