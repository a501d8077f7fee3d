"""Style and compliance rules: the recipe made from them, the pair builder's style_rule on
candidates stored as a generation job stores them, a real generation job against SmolLM2
(llama.cpp's server) followed by build_and_queue, the admin page and the command."""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from project.celery import app as celery_app
from tasks import generation
from tasks.feedback.pairs import STYLE_RULE_CONFIDENCE, build_pairs
from tasks.feedback.rules import rules_recipe, rules_variants, validate_rules
from tasks.feedback.verify import build_and_queue
from tasks.llm import Completion
from tasks.models import (
    Candidate,
    FeedbackSignal,
    GenerationJob,
    GenerationRecipe,
    LLMEndpoint,
    SignalPair,
)
from tests.factories import ProjectFactory, PromptFactory

RULES = ["Never promise delivery dates", "Address the customer by name", "Answer in English"]


def escaped(message: str) -> str:
    return "".join("\\" + c if c in r"()[]{}.*+?^$|\\" else c for c in message)


# --- the rules and the recipe ----------------------------------------------------------------


@pytest.mark.parametrize(
    "rules, message",
    [
        ([], "at least one rule"),
        ("Be polite", "a list of texts"),
        ([f"Rule number {n}" for n in range(21)], "At most 20 rules; 21 were given"),
        (["Be polite", "   "], "Rule 2 is empty"),
        (["Be polite", "x" * 501], "Rule 2 has 501 characters (at most 500)"),
        (["Be polite", "Be brief", "be  POLITE"], "Rule 3 repeats rule 1: 'be  POLITE'"),
        (["Be polite\nBe brief"], "Rule 1 spans several lines"),
        (["Be polite", 7], "Rule 2 is not text"),
    ],
)
def test_bad_rules_are_refused_naming_the_bad_one(rules, message):
    with pytest.raises(ValidationError, match=escaped(message)):
        validate_rules(rules)


def test_twenty_rules_of_500_characters_are_fine():
    rules = [f"{n:02d} " + "x" * 497 for n in range(20)]
    assert validate_rules(rules) == rules
    variants = rules_variants(rules)
    assert len(variants) == 21  # one more than an ordinary recipe may have
    assert generation.validate_variants(variants) == variants


def test_the_recipe_has_a_follows_variant_and_one_violates_variant_per_rule(acme):
    with scope(organization=acme.organization):
        recipe = rules_recipe(
            organization=acme.organization,
            name="Support style",
            rules=[f"  {rule} " for rule in RULES],
            base={"temperature": 0.5, "max_tokens": 200, "system_prompt": "You are Acme's bot."},
        )
    variants = recipe.variants
    assert [v["name"] for v in variants] == [
        "rules:follows",
        "rules:violates:1",
        "rules:violates:2",
        "rules:violates:3",
    ]
    assert [v["style_rules"] for v in variants] == [
        {"rules": RULES, "breaks": None},
        {"rules": RULES, "breaks": 1},
        {"rules": RULES, "breaks": 2},
        {"rules": RULES, "breaks": 3},
    ]
    for v in variants:
        assert (v["temperature"], v["max_tokens"], v["top_p"]) == (0.5, 200, 0.95)
        assert v["system_prompt"].startswith("You are Acme's bot.\n\n")
        for n, rule in enumerate(RULES, start=1):
            assert f"{n}. {rule}" in v["system_prompt"]  # every variant lists every rule
    assert "follow all of the rules" in variants[0]["system_prompt"]
    assert "except rule" not in variants[0]["system_prompt"]
    breaking = variants[1]["system_prompt"]
    assert "except rule 1 ('Never promise delivery dates')" in breaking
    assert "realistic" in breaking and "do not say that you are breaking one" in breaking
    assert len({v["seed"] for v in variants}) == 4
    # Every variant is its own candidate: distinct keys for one model.
    assert len({generation.variant_key("m", v) for v in variants}) == 4

    # The recipe is updated in place, and the generate form offers it.
    with scope(organization=acme.organization):
        again = rules_recipe(organization=acme.organization, name="Support style", rules=RULES[:1])
        assert again.pk == recipe.pk and len(again.variants) == 2
        assert "Support style" in generation.recipes_for(acme.organization)
        with pytest.raises(ValidationError, match="built-in recipe"):
            rules_recipe(
                organization=acme.organization, name=generation.DEFAULT_RECIPE_NAME, rules=RULES
            )
        with pytest.raises(ValidationError, match="Unknown base setting"):
            rules_recipe(organization=acme.organization, name="x", rules=RULES, base={"n": 2})


def test_ordinary_variants_keep_their_keys_and_shape():
    """The optional style_rules key changes nothing for variants without it."""
    [plain] = generation.validate_variants([{"name": "x", "temperature": 0.3}])
    assert "style_rules" not in plain
    assert generation.variant_key("m", plain) == generation.variant_key(
        "m", {**plain, "name": "renamed"}
    )
    with pytest.raises(ValidationError, match="style_rules.breaks"):
        generation.validate_variants(
            [{"name": "x", "temperature": 0.3, "style_rules": {"rules": ["a"], "breaks": 2}}]
        )
    with pytest.raises(ValidationError, match="at most 20 variants"):
        generation.validate_variants([{"name": f"v{n}", "temperature": 0.3} for n in range(21)])


# --- the pair builder on candidates stored as a generation job stores them ----------------


def job_for(project, recipe) -> GenerationJob:
    endpoint = LLMEndpoint.objects.create(
        name=f"e{project.pk}-{recipe.name}",
        base_url="http://llm:8080/v1",
        model="m",
        all_organizations=True,
    )
    with scope(organization=project.organization):
        return generation.create_job(
            project=project, endpoint=endpoint, variants=recipe.variants, recipe_name=recipe.name
        )


def store(job, prompt, variant_name, text) -> Candidate:
    """What the job stores when the model answers (tasks.generation._store)."""
    [variant] = [v for v in job.variants if v["name"] == variant_name]
    completion = Completion(text=text, finish_reason="stop", model="m")
    with scope(organization=job.organization):
        generation._store(job, prompt, variant, completion)
        return Candidate.objects.get(prompt=prompt, source_key=variant["key"])


def pairs_of(project):
    with scopes_disabled():
        return list(
            SignalPair.objects.filter(project=project, rule="style_rule").order_by(
                "prompt_id", "rejected_id"
            )
        )


def test_follows_is_chosen_over_each_violates_with_the_broken_rule_named(acme):
    project = ProjectFactory(organization=acme.organization, pair_settings={})
    with scope(organization=acme.organization):
        recipe = rules_recipe(organization=acme.organization, name="Support", rules=RULES)
    with scopes_disabled():
        first = PromptFactory(project=project, text="Where is my parcel?")
        second = PromptFactory(project=project, text="Can I return shoes?")
    job = job_for(project, recipe)
    made = {}
    for prompt in (first, second):
        for name in ["rules:follows", "rules:violates:1", "rules:violates:2", "rules:violates:3"]:
            made[prompt.pk, name] = store(job, prompt, name, f"{name} to {prompt.text}")
    follows = made[first.pk, "rules:follows"]
    assert follows.parameters["style_rules"] == {"rules": RULES, "breaks": None}
    assert made[first.pk, "rules:violates:3"].parameters["style_rules"]["breaks"] == 3
    # A feedback-log reply of the same prompt is never part of a style pair.
    with scopes_disabled():
        Candidate.objects.create(
            organization=acme.organization, prompt=first, text="logged", content_hash="h"
        )

    with scope(organization=acme.organization):
        counts = build_pairs(project=project)
    assert counts["pairs"] == {"style_rule": {"to_verify": 6}}
    found = pairs_of(project)
    assert len(found) == 6
    for pair in found:
        assert pair.chosen_id == made[pair.prompt_id, "rules:follows"].pk
        n = next(
            n
            for n in (1, 2, 3)
            if made[pair.prompt_id, f"rules:violates:{n}"].pk == pair.rejected_id
        )
        assert pair.reason == (
            f"Style rule: follows all rules; the other breaks rule {n}: '{RULES[n - 1]}'"
        )
        assert pair.evidence == [] and pair.confidence == STYLE_RULE_CONFIDENCE == 0.75
        assert pair.status == SignalPair.Status.TO_VERIFY  # 0.75 < verify_below 0.8

    # A project that trusts the rules (verify_below 0.7) accepts them (no audit sample).
    project.pair_settings = {"verify_below": 0.7, "audit_sample_percent": 0}
    project.save()
    with scope(organization=acme.organization):
        assert build_pairs(project=project)["pairs"] == {"style_rule": {"accepted": 6}}


def test_only_candidates_of_the_same_rules_pair_and_contradictions_are_marked(acme):
    project = ProjectFactory(organization=acme.organization, pair_settings={})
    with scope(organization=acme.organization):
        old = rules_recipe(organization=acme.organization, name="v1", rules=RULES[:2])
        new = rules_recipe(organization=acme.organization, name="v2", rules=RULES[1:])
    with scopes_disabled():
        prompt = PromptFactory(project=project, text="Where is my parcel?")
    old_job, new_job = job_for(project, old), job_for(project, new)
    follows_old = store(old_job, prompt, "rules:follows", "A")
    breaks_old = store(old_job, prompt, "rules:violates:1", "B")
    store(new_job, prompt, "rules:violates:1", "C")  # other rules: no follows of its own
    with scope(organization=acme.organization):
        build_pairs(project=project)
    [pair] = pairs_of(project)
    assert (pair.chosen_id, pair.rejected_id) == (follows_old.pk, breaks_old.pk)
    assert pair.reason.endswith("breaks rule 1: 'Never promise delivery dates'")

    # A thumbs signal saying the opposite contradicts it, as with any other rule.
    with scopes_disabled():
        for reply, thumbs in ((breaks_old, 1), (follows_old, -1)):
            FeedbackSignal.objects.create(
                organization=acme.organization,
                project=project,
                kind="feedback",
                prompt=prompt,
                reply=reply,
                thumbs=thumbs,
                conversation_key="c",
            )
    with scope(organization=acme.organization):
        counts = build_pairs(project=project)
    assert counts["pairs"]["style_rule"] == {"contradicted": 1}
    [pair] = pairs_of(project)
    assert "Contradicted: the other reply comes first by thumbs-up reply" in pair.reason


def test_a_project_without_a_rules_recipe_gets_no_style_pairs(acme):
    project = ProjectFactory(organization=acme.organization)
    with scopes_disabled():
        prompt = PromptFactory(project=project)
    job = job_for(
        project,
        GenerationRecipe(name="plain", variants=[{"name": "x", "temperature": 0.3}]),
    )
    store(job, prompt, "x", "one")
    with scope(organization=acme.organization):
        assert build_pairs(project=project)["pairs"] == {}


# --- a real generation job against SmolLM2, then build_and_queue ------------------------------


@pytest.fixture
def eager(transactional_db, settings):
    settings.CHOSEN_LLM_BACKOFF_SECONDS = 0.01
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_real_model_drafts_the_rules_recipe_and_pairs_go_to_experts(eager, acme, llama_server):
    endpoint = LLMEndpoint.objects.create(
        name="SmolLM2",
        base_url=llama_server,
        model="smollm2",
        all_organizations=True,
        timeout_seconds=60,
        max_concurrent_requests=2,
    )
    project = ProjectFactory(organization=acme.organization)  # pairwise, default settings
    rules = ["Never promise delivery dates", "Always end with a question"]
    with scopes_disabled():
        prompts = [
            PromptFactory(project=project, text=text)
            for text in ["When will my order arrive?", "Can I change my address?"]
        ]
    with scope(organization=acme.organization):
        rules_recipe(
            organization=acme.organization,
            name="Support rules",
            rules=rules,
            base={"max_tokens": 24, "temperature": 0.7},
        )
        job = generation.request_generation(
            project=project, endpoint_id=endpoint.pk, recipe="Support rules"
        )  # eager: dispatch and every chunk run here
        job.refresh_from_db()
        assert job.status == GenerationJob.Status.SUCCEEDED, (job.error, list(job.failures.all()))
        assert (job.total, job.done, job.failed) == (6, 6, 0)
        candidates = list(Candidate.objects.filter(prompt__project=project))
        assert len(candidates) == 6
        for candidate in candidates:
            assert candidate.text.strip() and candidate.parameters["recipe"] == "Support rules"
            assert candidate.parameters["style_rules"]["rules"] == rules

        print("\nSample candidates:")
        for candidate in sorted(candidates, key=lambda c: (c.prompt_id, c.pk)):
            print(f"  [{candidate.parameters['variant']}] {candidate.text[:100]!r}")
        counts = build_and_queue(project=project)
    assert counts["pairs"] == {"style_rule": {"to_verify": 4}}
    # The job built items for the prompts' candidates as they arrived (a pair of each two
    # in a pairwise project): the pairs are put before experts in those, none is new.
    assert counts["queued"] == 0
    by_id = {c.pk: c for c in candidates}
    found = pairs_of(project)
    assert len(found) == 4
    for prompt in prompts:
        mine = [p for p in found if p.prompt_id == prompt.pk]
        assert len(mine) == 2  # one follows over each of the two violates
        assert {by_id[p.chosen_id].parameters["variant"] for p in mine} == {"rules:follows"}
        broken = sorted(by_id[p.rejected_id].parameters["style_rules"]["breaks"] for p in mine)
        assert broken == [1, 2]
        for pair in mine:
            n = by_id[pair.rejected_id].parameters["style_rules"]["breaks"]
            assert by_id[pair.rejected_id].parameters["variant"] == f"rules:violates:{n}"
            assert pair.reason == (
                f"Style rule: follows all rules; the other breaks rule {n}: '{rules[n - 1]}'"
            )
            assert pair.status == SignalPair.Status.TO_VERIFY and pair.item_id is not None
            assert pair.confidence == 0.75 and pair.evidence == []


# --- the admin page and the command -----------------------------------------------------------


def test_lead_adds_a_recipe_from_rules_in_the_admin(acme, globex, as_user):
    url = reverse("admin:tasks_generationrecipe_add_from_rules")
    client = as_user(acme.lead)
    listing = client.get(reverse("admin:tasks_generationrecipe_changelist")).content.decode()
    assert f'href="{url}"' in listing and "Add from rules" in listing
    page = client.get(url)
    assert page.status_code == 200 and 'id="rules-form"' in page.content.decode()

    bad = client.post(url, {"name": "Support", "rules": "Be polite\n\nbe polite\n"})
    assert bad.status_code == 200
    assert "Rule 2 repeats rule 1: &#x27;be polite&#x27;." in bad.content.decode()

    response = client.post(
        url,
        {
            "name": "Support",
            "rules": "\n".join(RULES) + "\n\n",
            "temperature": "0.4",
            "max_tokens": "",
        },
    )
    with scopes_disabled():
        recipe = GenerationRecipe.objects.get(name="Support")
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:tasks_generationrecipe_change", args=[recipe.pk])
    assert recipe.organization == acme.organization
    assert [v["name"] for v in recipe.variants][:2] == ["rules:follows", "rules:violates:1"]
    assert len(recipe.variants) == 4 and recipe.variants[0]["temperature"] == 0.4
    assert recipe.variants[0]["max_tokens"] == 512
    # Scoped: Globex does not see it and makes its own.
    theirs = as_user(globex.lead).get(reverse("admin:tasks_generationrecipe_changelist"))
    assert "Support" not in theirs.content.decode()


def test_annotators_may_not_add_a_recipe_from_rules(acme, as_user):
    url = reverse("admin:tasks_generationrecipe_add_from_rules")
    response = as_user(acme.annotator).post(url, {"name": "x", "rules": "Be polite"})
    assert response.status_code in (302, 403)  # the admin's login page, or refused
    assert not GenerationRecipe.objects.with_scopes_disabled().exists()


def test_command_makes_the_recipe_from_rules_and_a_file(acme, tmp_path):
    out = StringIO()
    call_command(
        "rules_recipe", "acme", "Support", "--rule", RULES[0], "--rule", RULES[1], stdout=out
    )
    text = out.getvalue()
    assert "Recipe 'Support' (3 variants):" in text
    assert "rules:follows        follows every rule" in text
    assert "rules:violates:2     breaks rule 2: 'Address the customer by name'" in text

    listed = tmp_path / "rules.txt"
    listed.write_text("\n".join(RULES) + "\n\n", encoding="utf-8")
    call_command("rules_recipe", "acme", "Support", "--rules-file", str(listed), stdout=StringIO())
    with scopes_disabled():
        [recipe] = GenerationRecipe.objects.filter(organization=acme.organization)
    assert len(recipe.variants) == 4

    with pytest.raises(CommandError, match="Rule 2 is empty"):
        call_command("rules_recipe", "acme", "Support", "--rule", "a", "--rule", " ")
    with pytest.raises(CommandError, match="No organization 'nope'"):
        call_command("rules_recipe", "nope", "Support", "--rule", "a")
