"""Replies token by token: the streaming call to the model, and the Redis stream that carries
the tokens from the worker to the page.

``tasks.llm`` has no streaming call, so ``stream_reply`` is written here with its rules:
every sampling parameter sent, errors turned into our own short messages (a server's body
is never quoted), and each request inside the endpoint's slot (``tasks.llm.endpoint_slot``).
The organization's share of an endpoint is a second slot of the same kind, keyed by the
endpoint and the organization (``organization_slot``), so one organization's experts cannot
take every slot of a shared server.

Each turn has one Redis stream (``chosen:chat:turn:<id>``): the worker appends batches of
tokens (at most every ``FLUSH_SECONDS``, the first token at once) and a final event; the
page reads it with a cursor (the last id it saw). The stream is capped and expires: the
database keeps the finished replies, Redis only what is in flight.
"""

from __future__ import annotations

import codecs
import json
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

from project.lazy import lazy_module
from tasks import llm
from tasks.models import LLMEndpoint

# Loaded by the first turn (project.lazy): httpx2 is openai's HTTP client (openai 3 depends
# on it; httpx is only for tests).
httpx2 = lazy_module("httpx2")
openai = llm.openai

# The page reads the stream every 200 ms once words come (the first is written at once):
# batches of 100 ms keep what it reads at most that old, at 10 writes a second a reply.
FLUSH_SECONDS = 0.1
STREAM_TTL_SECONDS = 3600
STREAM_MAX_EVENTS = 20_000
CANCEL_TTL_SECONDS = 3600
# An organization's slot is held for a whole reply, which may outlast the endpoint's
# per-read timeout many times over: its claim lapses only after this long.
ORGANIZATION_LEASE_SECONDS = 900

_redis = None


def connection() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5, decode_responses=True
        )
    return _redis


def stream_key(turn_id: int) -> str:
    return f"chosen:chat:turn:{turn_id}"


def cancel_key(turn_id: int) -> str:
    return f"chosen:chat:stop:{turn_id}"


# --- the model -----------------------------------------------------------------------------


@dataclass
class _Share:
    """What ``tasks.llm.endpoint_slot`` reads of an endpoint, for an organization's share."""

    pk: str
    max_concurrent_requests: int
    timeout_seconds: float


def organization_slot(endpoint: LLMEndpoint, organization_id: int, limit: int):
    """One of the ``limit`` slots this organization has on the endpoint."""
    share = _Share(
        f"{endpoint.pk}:organization:{organization_id}", limit, ORGANIZATION_LEASE_SECONDS - 5
    )
    return llm.endpoint_slot(share)


class Stopped(Exception):
    """The expert stopped the turn."""


def client_for(endpoint: LLMEndpoint) -> openai.OpenAI:
    """The endpoint's client, made once per process and shared by the chat worker's
    threads (its HTTP client is thread-safe): making one loads the CA certificates, about
    30 ms of CPU, as much as streaming a whole reply costs. An endpoint whose address, key
    or timeout changed gets a new one."""
    key = (endpoint.pk, endpoint.base_url, endpoint.api_key, endpoint.timeout_seconds)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = llm.client_for(endpoint)
    return client


_clients: dict[tuple, openai.OpenAI] = {}
_clients_lock = threading.Lock()


def stream_reply(
    client: openai.OpenAI,
    endpoint: LLMEndpoint,
    model: str,
    messages,
    variant: dict,
    *,
    emit,
    stopped,
) -> llm.Completion:
    """One streamed chat completion: ``emit(text)`` for each piece as it arrives; the whole
    reply at the end, or GenerationError (a message of ours), or Stopped.

    The server-sent events are read as lines and JSON, not as the openai package's chunk
    objects: those cost about twice the CPU per token, and the chat worker reads the
    tokens of every expert's replies at once. The request itself (every sampling parameter,
    the status errors) is still the openai client's (``tasks.llm.request``).

    Reads are paced (``_paced_lines``): a model server sends each token in a packet of its
    own, and the page is sent tokens in batches of FLUSH_SECONDS anyway (``Channel``), so
    after the first token the socket is read once per batch, every packet that arrived
    meanwhile at once, instead of waking this thread for every token."""
    pieces: list[str] = []
    finish = ""
    try:
        with llm.generation_errors(endpoint):
            response = llm.request(
                client.with_streaming_response, model, messages, variant, stream=True
            )
            with response as stream:
                paced = _paced_lines(stream.iter_bytes(), FLUSH_SECONDS, lambda: bool(pieces))
                for line in paced:
                    chunk = _event(line)
                    if chunk is None:
                        continue
                    if chunk is _DONE:
                        break
                    choice = chunk["choices"][0] if chunk.get("choices") else None
                    if choice is None:
                        continue
                    text = (choice.get("delta") or {}).get("content")
                    if isinstance(text, str) and text:
                        text = text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
                        pieces.append(text)
                        emit(text)
                    if isinstance(choice.get("finish_reason"), str):
                        finish = choice["finish_reason"][:32]
                    if stopped():
                        raise Stopped
    except httpx2.HTTPError:
        # The connection broke off mid-reply (the server stopped or restarted).
        raise llm.GenerationError(
            "The LLM server stopped in the middle of a reply.", retry=True
        ) from None
    except (AttributeError, IndexError, KeyError, TypeError):
        raise llm.GenerationError("The LLM server sent a malformed reply.", retry=True) from None
    if not finish:
        # A stream that ends without a finish reason was cut off (a server's stream always
        # ends with one): the server went away mid-reply.
        raise llm.GenerationError("The LLM server stopped in the middle of a reply.", retry=True)
    text = "".join(pieces)
    if not text.strip():
        raise llm.GenerationError("The LLM server sent a reply without a completion.", retry=True)
    return llm.Completion(text=text, finish_reason=finish, model=model[:200])


_DONE = object()


def _paced_lines(chunks, every: float, started):
    """The lines of a byte stream; once ``started()`` (the first words came), the stream is
    read at most once per ``every`` seconds: what arrives meanwhile waits in the socket's
    buffer and is read in one go. Lines end with LF, CRLF or CR; a UTF-8 character split
    between two reads is put together."""
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    partial = ""
    read_at = None
    for chunk in chunks:
        lines = (partial + decode(chunk)).splitlines(keepends=True)
        partial = lines.pop() if lines and not lines[-1].endswith(("\n", "\r")) else ""
        for line in lines:
            yield line.rstrip("\r\n")
        if read_at is None:
            if started():
                read_at = time.monotonic()
            continue
        pause = read_at + every - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        read_at = time.monotonic()
    tail = partial + decode(b"", final=True)
    if tail:
        yield tail.rstrip("\r\n")


def _event(line: str):
    """One line of the server-sent events: a chunk (a dict), _DONE, or None for what is
    not data (blank lines, comments, ``event:`` lines). Malformed JSON raises ValueError;
    a chunk that is an error is the server's error, told in words of ours."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data.startswith("[DONE]"):
        return _DONE
    chunk = json.loads(data)
    if not isinstance(chunk, dict):
        raise ValueError("not a chunk")
    if chunk.get("error"):
        raise llm.GenerationError(
            "The LLM server answered with a server error in the middle of a reply.", retry=True
        )
    return chunk


# --- the Redis stream ----------------------------------------------------------------------


class Channel:
    """The worker's side of one turn's stream: batches of tokens per reply, then the end."""

    def __init__(self, turn_id: int):
        self.key = stream_key(turn_id)
        self.client = connection()
        self.pending: dict[int, list[str]] = {}
        self.first_at: dict[int, float] = {}
        self.flushed_at: dict[int, float] = {}

    def reset(self) -> None:
        """A fresh stream for this attempt (a rerun after a lost worker starts over)."""
        self.client.delete(self.key)
        self.add({"kind": "start"})

    def add(self, event: dict, *, expire: bool = True) -> None:
        # One round trip: the chat worker's threads write many turns' tokens at once.
        fields = {"event": json.dumps(event)}
        if not expire:  # a batch of tokens: the stream's expiry was set when it began
            self.client.xadd(self.key, fields, maxlen=STREAM_MAX_EVENTS, approximate=True)
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(self.key, fields, maxlen=STREAM_MAX_EVENTS, approximate=True)
        pipe.expire(self.key, STREAM_TTL_SECONDS)
        pipe.execute()

    def token(self, reply: int, text: str) -> None:
        """Called from the reply's own thread: ``reply`` keys are never shared."""
        now = time.time()
        self.pending.setdefault(reply, []).append(text)
        self.first_at.setdefault(reply, now)
        # The first token goes out at once (the expert sees the model start); later ones
        # in batches, so a fast model does not cost one Redis write per token.
        if now - self.flushed_at.get(reply, 0.0) >= FLUSH_SECONDS:
            self.flush(reply)

    def flush(self, reply: int) -> None:
        pieces = self.pending.pop(reply, None)
        if pieces:
            at = self.first_at.pop(reply)
            event = {"kind": "token", "reply": reply, "text": "".join(pieces), "at": at}
            self.add(event, expire=False)
        self.flushed_at[reply] = time.time()

    def reply_done(self, reply: int, *, error: str = "") -> None:
        self.flush(reply)
        self.add({"kind": "reply-end", "reply": reply, "error": error})

    def end(self, status: str, message: str = "") -> None:
        self.add({"kind": "end", "status": status, "message": message})


READ_MAX_EVENTS = 2000  # per poll: a cursor far behind catches up over a few


def read(turn_id: int, after: str = "0", count: int = READ_MAX_EVENTS) -> list[dict]:
    """The turn's events after the cursor ``after`` (a stream id), each with its ``id``."""
    start = _start(after)
    try:
        rows = connection().xrange(stream_key(turn_id), min=start, count=count)
    except redis.ResponseError:
        rows = connection().xrange(stream_key(turn_id), min="-", count=count)
    return _events(rows)


def _start(after: str) -> str:
    return f"({after}" if after and after != "0" else "-"


def _events(rows) -> list[dict]:
    """The events of stream rows, without the mark of a queued turn (not news for the page)."""
    found = [{"id": row_id, **json.loads(fields["event"])} for row_id, fields in rows]
    return [event for event in found if event["kind"] != QUEUED]


def cursor(after: str | None) -> str:
    """The page's cursor as a stream id, or "0" (the start) for anything else."""
    after = after or "0"
    return after if all(part.isdigit() for part in after.split("-", 1)) else "0"


# --- the page's short way to the stream ------------------------------------------------------
#
# A poll of the events costs the web server about 5.5 ms of CPU through the whole stack (the
# session, the user and their memberships, the turn's row), and 50 experts reading their
# replies poll about 70 times a second: 40% of the web server's CPU in bench/chat_load.py.
# The stream alone can answer: the page that shows a turn holds a key for it
# (``events_key``: the project, the turn, the expert's session and an expiry, signed with
# the SECRET_KEY), and ``chat.middleware`` answers a poll with a valid key from Redis,
# before the session, the user or the database are read. A turn's stream is opened when it
# is queued (``open_queued``), so the polls before a worker takes it are answered so too.
# Every other poll takes the whole way (``chat.views.events``): no stream (long finished),
# a stream silent for STALE_SECONDS (a worker waiting for a free slot of the model, or
# lost: only the turn's row tells), an expired or foreign key, Redis away.

EVENTS_KEY_SECONDS = STREAM_TTL_SECONDS
STALE_SECONDS = 5.0


def events_key(project_id: int, turn_id: int, session_key: str | None) -> str:
    """The page's key to the turn's stream, for the session that loaded the page."""
    if not session_key:
        return ""
    expires = int(time.time()) + EVENTS_KEY_SECONDS
    return f"{expires}.{_signature(project_id, turn_id, session_key, expires)}"


def events_key_valid(key: str, project_id: int, turn_id: int, session_key: str | None) -> bool:
    expires, _, signature = key.partition(".")
    if not session_key or not expires.isdigit() or int(expires) < time.time():
        return False
    return constant_time_compare(
        signature, _signature(project_id, turn_id, session_key, int(expires))
    )


def _signature(project_id: int, turn_id: int, session_key: str, expires: int) -> str:
    value = f"{project_id}:{turn_id}:{session_key}:{expires}"
    return salted_hmac("chosen.chat.events", value, algorithm="sha256").hexdigest()[:32]


@dataclass
class Live:
    events: list[dict]
    queued: bool  # no worker has the turn yet


def read_live(turn_id: int, after: str) -> Live | None:
    """The events after the cursor while the turn waits for a worker or a worker writes its
    stream, in one round trip; None when only the turn's row can answer: no stream (long
    finished, or written before this version), nothing new and nothing written for
    STALE_SECONDS (by the clock of Redis, which wrote the stream ids), or Redis away."""
    key = stream_key(turn_id)
    try:
        pipe = connection().pipeline(transaction=False)
        pipe.xrange(key, min=_start(after), count=READ_MAX_EVENTS)
        pipe.xrevrange(key, count=1)
        pipe.time()
        rows, last, (seconds, micros) = pipe.execute()
    except redis.RedisError:
        return None
    if not last:
        return None
    if not rows:
        written_ms = int(last[0][0].partition("-")[0])
        if seconds * 1000 + micros / 1000 - written_ms > STALE_SECONDS * 1000:
            return None
    return Live(_events(rows), queued=json.loads(last[0][1]["event"])["kind"] == QUEUED)


def stop(turn_id: int) -> None:
    connection().set(cancel_key(turn_id), "1", ex=CANCEL_TTL_SECONDS)


def stop_asked(turn_id: int) -> bool:
    return bool(connection().exists(cancel_key(turn_id)))


def open_queued(turn_id: int) -> None:
    """A new turn's stream, holding only the mark that it waits for a worker (so that the
    page's polls meanwhile take the short way too), in one round trip. It first clears what
    Redis may still hold under the new id: a stream and a stop flag left by an earlier
    database whose ids this one reuses (a restore from a backup, a recreated database). Its
    events would otherwise reach this turn's page — another conversation's replies — and
    its end would end this turn before it began."""
    pipe = connection().pipeline(transaction=True)
    pipe.delete(stream_key(turn_id), cancel_key(turn_id))
    pipe.xadd(stream_key(turn_id), {"event": json.dumps({"kind": QUEUED})})
    pipe.expire(stream_key(turn_id), STREAM_TTL_SECONDS)
    pipe.execute()


QUEUED = "queued"
