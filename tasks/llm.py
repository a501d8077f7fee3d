"""One client for every OpenAI-compatible local server (Ollama's /v1, llama.cpp's server,
vLLM, TGI), through the official ``openai`` package.

Every sampling parameter is sent explicitly: Ollama's /v1 sets an omitted temperature or
top_p to 1.0, and Ollama's and llama-cpp-python's endpoints ignore ``n``, so a recipe asks
one request per variant, each with its own seed.

Errors are turned into short messages of our own. A server's reply body is never quoted:
it may come from an internal service the tenant should learn nothing about.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
from django.conf import settings

from project.lazy import lazy_module
from tasks.models import LLMEndpoint

openai = lazy_module("openai")  # loaded by the first request to an LLM server


class GenerationError(Exception):
    """A request that did not give a completion. ``retry`` says whether trying again may
    help (connection refused, timeout, 5xx, 429, a malformed reply); ``attempts`` is set
    once retries are exhausted."""

    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.retry = retry
        self.attempts = 1


@dataclass
class Completion:
    text: str
    finish_reason: str
    model: str


def check_base_url(url: str) -> str:
    """An http(s) URL with a host (a single-label one such as "ollama" included), without
    credentials, query or fragment; ValueError otherwise. Returned without a trailing /."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("Give an http:// or https:// URL with a host, e.g. http://ollama:11434/v1")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("The URL may not carry credentials, a query or a fragment.")
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise ValueError("The URL's port is not a number between 0 and 65535.") from None
    return url.strip().rstrip("/")


def client_for(endpoint: LLMEndpoint) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=endpoint.base_url,
        # Local servers accept anything; the package insists on a value.
        api_key=endpoint.api_key or "not-needed",
        timeout=endpoint.timeout_seconds,
        max_retries=0,  # retries are ours (complete_with_retries), with their own backoff
    )


def request(client: openai.OpenAI, model: str, messages, variant: dict, **extra):
    """The chat-completion request for one variant, every sampling parameter sent (see the
    module's docstring); ``extra``: e.g. ``stream=True``. Call it inside
    ``generation_errors``."""
    return client.chat.completions.create(
        model=model,
        messages=messages,
        temperature=variant["temperature"],
        top_p=variant["top_p"],
        max_tokens=variant["max_tokens"],
        seed=variant["seed"],
        **extra,
    )


@contextlib.contextmanager
def generation_errors(endpoint: LLMEndpoint):
    """The openai client's errors as GenerationError, in short messages of our own: the
    server's body is never quoted."""
    try:
        yield
    except openai.APITimeoutError:
        raise GenerationError(
            f"The server did not answer within {endpoint.timeout_seconds:g} s.", retry=True
        ) from None
    except openai.APIConnectionError:
        raise GenerationError("Could not connect to the LLM server.", retry=True) from None
    except openai.APIStatusError as error:
        code = error.status_code
        retry = code >= 500 or code in (408, 429)
        kind = "a server error" if code >= 500 else "a refusal"
        raise GenerationError(
            f"The LLM server answered with {kind} (HTTP {code}).", retry=retry
        ) from None
    except (openai.APIResponseValidationError, ValueError):
        raise GenerationError("The LLM server sent a malformed reply.", retry=True) from None


def complete(
    client: openai.OpenAI, endpoint: LLMEndpoint, model: str, messages, variant: dict
) -> Completion:
    """One chat completion for one variant with ``model`` (the job's, fixed when it
    started), or GenerationError."""
    with generation_errors(endpoint):
        response = request(client, model, messages, variant)
    return _completion(response, model)


def _completion(response, model: str) -> Completion:
    """The reply's text, finish reason and model, checked: a reply of another shape, or an
    empty text, is a malformed reply (worth a retry), not a crash or a blank candidate."""
    choices = getattr(response, "choices", None)
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None)
    if not isinstance(text, str) or not text.replace("\x00", "").strip():
        raise GenerationError("The LLM server sent a reply without a completion.", retry=True)
    finish = getattr(choice, "finish_reason", None)
    named = getattr(response, "model", None)
    return Completion(
        text=text.replace("\x00", ""),  # PostgreSQL text cannot hold NUL
        finish_reason=finish[:32] if isinstance(finish, str) else "",
        model=(named if isinstance(named, str) and named else model)[:200],
    )


def complete_with_retries(
    client: openai.OpenAI,
    endpoint: LLMEndpoint,
    model: str,
    messages,
    variant: dict,
    *,
    cancelled=None,
) -> Completion:
    """``complete`` in one of the endpoint's slots, with exponential backoff (and jitter,
    outside the slot) on errors worth retrying; after CHOSEN_LLM_RETRIES retries the last
    error is raised with its ``attempts``."""
    retries = settings.CHOSEN_LLM_RETRIES
    base = settings.CHOSEN_LLM_BACKOFF_SECONDS
    for attempt in range(1, retries + 2):
        try:
            with endpoint_slot(endpoint):
                return complete(client, endpoint, model, messages, variant)
        except GenerationError as error:
            error.attempts = attempt
            if not error.retry or attempt > retries or (cancelled and cancelled()):
                raise
        time.sleep(base * 2 ** (attempt - 1) * (1 + random.random() / 2))  # noqa: S311
    raise AssertionError("unreachable")


def list_models(endpoint: LLMEndpoint) -> list[str]:
    """The model names the server offers (the admin's "test connection")."""
    try:
        return sorted(model.id for model in client_for(endpoint).models.list())
    except openai.APITimeoutError:
        raise GenerationError("The server did not answer in time.", retry=False) from None
    except openai.APIConnectionError:
        raise GenerationError("Could not connect to the LLM server.", retry=False) from None
    except openai.APIStatusError as error:
        raise GenerationError(
            f"The LLM server answered with HTTP {error.status_code}.", retry=False
        ) from None
    except (openai.APIResponseValidationError, ValueError):
        raise GenerationError("The LLM server sent a malformed reply.", retry=False) from None


# At most max_concurrent_requests requests in flight per endpoint, across every worker and
# job: a Redis sorted set of slot holders scored by when their claim lapses, so the slot of
# a worker killed mid-request frees itself.
_CLAIM = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
    redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 60)
    return 1
end
return 0
"""
_redis = None


def _redis_client():
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=10
        )
    return _redis


@contextlib.contextmanager
def endpoint_slot(endpoint: LLMEndpoint):
    """Hold one of the endpoint's request slots for the duration of one request."""
    limit = max(1, endpoint.max_concurrent_requests)
    client, key, token = _redis_client(), f"chosen:llm-slots:{endpoint.pk}", uuid.uuid4().hex
    # A claim outlives the longest request; then it lapses (Redis's clock, not ours).
    lease = endpoint.timeout_seconds + 5
    try:
        claim = client.register_script(_CLAIM)
        while not claim(keys=[key], args=[lease, limit, token]):
            time.sleep(0.02)
    except redis.RedisError:
        raise GenerationError("The task queue's Redis did not answer.", retry=True) from None
    try:
        yield
    finally:
        with contextlib.suppress(redis.RedisError):  # else the claim lapses by itself
            client.zrem(key, token)
