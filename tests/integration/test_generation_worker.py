"""Candidate generation end to end: a real Celery worker, the real Redis broker and a real
model (SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible server); a worker
killed with SIGKILL mid-job, against a deliberately slow fake server."""

import time

from django_scopes import scope, scopes_disabled

from tasks.models import Candidate, GenerationJob, Item, LLMEndpoint
from tests.factories import ProjectFactory, PromptFactory
from tests.fake_llm import FakeLLM

THREE_VARIANTS = [
    {"name": "brief", "system_prompt": "Answer in one sentence.", "temperature": 0.3, "seed": 1},
    {"name": "plain", "system_prompt": "You are helpful.", "temperature": 0.7, "seed": 2},
    {"name": "wild", "system_prompt": "You are creative.", "temperature": 1.0, "seed": 3},
]
QUESTIONS = [
    "What is the capital of France?",
    "Name a primary color.",
    "How many legs does a spider have?",
    "What is 2 + 2?",
    "Say hello in Spanish.",
]


def wait_for(client, url: str, worker, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (job := client.get(url).json())["status"] not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"{job}\n{worker.output()[-3000:]}"
        time.sleep(0.5)
    return job


def endpoint_for(url: str, **fields) -> LLMEndpoint:
    return LLMEndpoint.objects.create(
        name=f"test {url}",
        base_url=url,
        model=fields.pop("model", "smollm2"),
        all_organizations=True,
        **fields,
    )


def project_with_prompts(organization, texts):
    with scopes_disabled():
        project = ProjectFactory(organization=organization)
        prompts = [
            PromptFactory(project=project, external_id=f"q{n}", text=text)
            for n, text in enumerate(texts)
        ]
    return project, prompts


def test_real_model_drafts_three_variants_for_five_prompts(
    start_worker, llama_server, acme, as_user
):
    worker = start_worker(concurrency=2)
    endpoint = endpoint_for(llama_server, max_concurrent_requests=2, timeout_seconds=60)
    project, prompts = project_with_prompts(acme.organization, QUESTIONS)
    variants = [{**v, "max_tokens": 40} for v in THREE_VARIANTS]
    client = as_user(acme.lead)

    response = client.post(
        f"/api/v1/projects/{project.pk}/generation-jobs",
        {"endpoint": endpoint.pk, "variants": variants},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    job = wait_for(client, response["Location"], worker)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"total": 15, "done": 15, "failed": 0, "fraction": 1.0}

    with scope(organization=acme.organization):
        candidates = list(Candidate.objects.filter(prompt__project=project))
        assert len(candidates) == 15
        by_variant = {}
        for candidate in candidates:
            assert candidate.source == Candidate.Source.GENERATED
            assert candidate.text.strip(), candidate.parameters
            assert candidate.model  # as the server named it
            assert candidate.finish_reason in ("stop", "length")
            by_variant.setdefault(candidate.parameters["variant"], []).append(candidate)
        assert sorted(by_variant) == ["brief", "plain", "wild"]
        for variant in variants:
            for candidate in by_variant[variant["name"]]:
                p = candidate.parameters
                assert (p["temperature"], p["top_p"], p["max_tokens"], p["seed"]) == (
                    variant["temperature"],
                    0.95,
                    40,
                    variant["seed"],
                )
                assert p["system_prompt"] == variant["system_prompt"]
        assert {c.prompt_id for c in candidates} == {p.pk for p in prompts}
        # Items were built as candidates arrived: three pairs per prompt.
        assert Item.objects.filter(project=project).count() == 15
        print("\nSample candidates:")
        for candidate in sorted(candidates, key=lambda c: (c.prompt_id, c.pk))[:6]:
            print(f"  [{candidate.parameters['variant']}] {candidate.text[:120]!r}")

    # Re-running the same recipe asks for nothing and stores nothing twice.
    again = client.post(
        f"/api/v1/projects/{project.pk}/generation-jobs",
        {"endpoint": endpoint.pk, "variants": variants},
        content_type="application/json",
    )
    assert again.status_code == 202
    assert wait_for(client, again["Location"], worker)["progress"]["done"] == 15
    with scope(organization=acme.organization):
        assert Candidate.objects.filter(prompt__project=project).count() == 15


def test_a_worker_killed_mid_job_is_resumed_without_duplicates(start_worker, acme, as_user):
    fake = FakeLLM(delay=0.25)
    try:
        endpoint = endpoint_for(fake.url, max_concurrent_requests=1, timeout_seconds=2)
        project, _ = project_with_prompts(acme.organization, [f"Question {n}?" for n in range(8)])
        client = as_user(acme.lead)
        first = start_worker()
        response = client.post(
            f"/api/v1/projects/{project.pk}/generation-jobs",
            {"endpoint": endpoint.pk, "variants": THREE_VARIANTS},
            content_type="application/json",
        )
        assert response.status_code == 202
        url = response["Location"]
        deadline = time.monotonic() + 60
        while client.get(url).json()["progress"]["done"] < 5:
            assert time.monotonic() < deadline, first.output()
            time.sleep(0.1)
        first.kill()
        with scopes_disabled():
            stored = Candidate.objects.filter(prompt__project=project).count()
            assert GenerationJob.objects.get(pk=response.json()["id"]).status == "running"
        assert 5 <= stored < 24  # really mid-job

        second = start_worker()
        assert client.post(f"{url}/resume").status_code == 202
        job = wait_for(client, url, second)
        assert job["status"] == "succeeded", job
        assert job["progress"] == {"total": 24, "done": 24, "failed": 0, "fraction": 1.0}
        with scopes_disabled():
            keys = list(
                Candidate.objects.filter(prompt__project=project).values_list(
                    "prompt_id", "source_key"
                )
            )
        assert len(keys) == 24 and len(set(keys)) == 24
        # Only the missing work was asked for again (at most the requests in flight twice).
        assert fake.requests <= 24 + 2
    finally:
        fake.close()
