"""The Celery app. Job modules are named ``jobs.py`` (the app ``tasks`` makes ``tasks.py``
ambiguous), so autodiscovery looks for ``related_name="jobs"``. The base task of an
organization's jobs is ``tasks.jobs.OrganizationTask``: this module imports no app.

The worker and beat record a heartbeat in Redis every CHOSEN_HEARTBEAT_SECONDS: /healthz
reports them and ``python -m project.health worker|beat`` is their containers' health
check (``project.health``).

Two queues. ``celery`` (the default) takes every job but chat turns: imports, exports, QC
reports and generation chunks, CPU- and database-heavy, for a worker of a few prefork
processes. ``chat`` takes ``chat.jobs.generate_turn``: a turn mostly waits on the model's
stream, so it runs on a worker of many threads (``-Q chat --pool threads``), where 50
experts' turns neither wait behind two processes busy with an export nor hold them. Both
queues are declared, so a worker started without ``-Q`` (an older deployment, the tests'
default) serves both and nothing waits for a worker that does not exist; the deployments
of the repository start one of each (README, "Workers")."""

import contextlib
import json
import logging
import os
import socket

import redis
from celery import Celery, bootsteps, signals
from django.conf import settings
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

log = logging.getLogger(__name__)

app = Celery("chosen")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(related_name="jobs")

DEFAULT_QUEUE = "celery"
CHAT_QUEUE = "chat"
app.conf.task_default_queue = DEFAULT_QUEUE
# Each queue its own routing key: two queues on one key would both get every message.
app.conf.task_queues = tuple(Queue(name, routing_key=name) for name in (DEFAULT_QUEUE, CHAT_QUEUE))
app.conf.task_routes = {"chat.jobs.generate_turn": {"queue": CHAT_QUEUE}}


# --- heartbeats -----------------------------------------------------------------------------
# One Redis key per process, ``<prefix>:health:<role>:<node>``, rewritten every interval with
# an expiry, and the set ``<prefix>:health:<role>`` of those nodes, so reading them is not a
# scan of every key in Redis. A beat's age is read from Redis's own countdown (forget-after
# minus the time left), so the clocks of web's and the worker's machines are never compared.

# A heartbeat older than this many intervals is stale: the process stopped beating.
STALE_AFTER_INTERVALS = 3
# A stale heartbeat stays visible (as stale) this many intervals, at least 10 minutes, then
# Redis forgets it: a SIGKILLed or OOM-killed worker shows up as dead for a while instead of
# silently vanishing.
FORGET_AFTER_INTERVALS = 60
FORGET_AFTER_MIN_SECONDS = 600


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)


def _key(role: str, node: str | None = None) -> str:
    """The key of one node's heartbeat, or without ``node`` the set of the role's nodes."""
    prefix = settings.CACHES.get("default", {}).get("KEY_PREFIX") or "chosen"
    return f"{prefix}:health:{role}" + (f":{node}" if node is not None else "")


def record_heartbeat(role: str, node: str) -> None:
    """``node`` (a worker's node name, beat's host name) is alive now. Raises RedisError."""
    interval = float(settings.CHOSEN_HEARTBEAT_SECONDS)
    forget = max(FORGET_AFTER_MIN_SECONDS, FORGET_AFTER_INTERVALS * interval)
    value = json.dumps({"interval": interval, "forget": forget, "pid": os.getpid()})
    pipe = _redis().pipeline(transaction=False)
    pipe.set(_key(role, node), value, px=int(forget * 1000))
    pipe.sadd(_key(role), node)
    pipe.execute()


def forget_heartbeat(role: str, node: str) -> None:
    """``node`` stopped on purpose (a warm shutdown): it is not a dead process."""
    _redis().pipeline(transaction=False).delete(_key(role, node)).srem(_key(role), node).execute()


def heartbeats(role: str, client: redis.Redis | None = None) -> dict[str, dict]:
    """Every ``role`` process heard from lately: node name → ``age_s`` of its last beat,
    ``stale_after_s`` and ``ok`` (not stale). Raises RedisError."""
    client = client or _redis()
    nodes = sorted(node.decode() for node in client.smembers(_key(role)))
    pipe = client.pipeline(transaction=False)
    for node in nodes:
        pipe.get(_key(role, node))
        pipe.pttl(_key(role, node))
    replies = pipe.execute() if nodes else []
    beats, forgotten = {}, []
    for node, value, left_ms in zip(nodes, replies[::2], replies[1::2], strict=True):
        if value is None or left_ms < 0:
            forgotten.append(node)  # its key expired: dead for long
            continue
        beat = json.loads(value)
        age = max(0.0, beat["forget"] - left_ms / 1000)
        stale_after = STALE_AFTER_INTERVALS * beat["interval"]
        ok = age <= stale_after
        beats[node] = {"age_s": round(age, 1), "stale_after_s": stale_after, "ok": ok}
    if forgotten:
        client.srem(_key(role), *forgotten)
    return beats


def _beat(role: str, node: str) -> None:
    """A heartbeat that cannot be written is logged, never raised: Redis being down must
    not stop the worker or beat (they reconnect); the missing beats tell the health check."""
    try:
        record_heartbeat(role, node)
    except redis.RedisError as exc:
        log.warning("%s %s: heartbeat not recorded (%s)", role, node, type(exc).__name__)


def _forget(role: str, node: str) -> None:
    with contextlib.suppress(redis.RedisError):  # then its beat goes stale and expires
        forget_heartbeat(role, node)


class WorkerHeartbeat(bootsteps.StartStopStep):
    """A step of the worker's consumer: it starts once the consumer takes tasks from the
    broker and beats from the consumer's timer, which the worker's event loop runs. So the
    beats stop when that loop is wedged or the broker connection is lost (the consumer stops
    its steps, and starts them again on reconnection), not only when the process dies; busy
    pool processes do not stop them."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer, **kwargs):
        super().__init__(consumer, **kwargs)
        self.timer_entry = None

    def start(self, consumer):
        _beat("worker", consumer.hostname)
        self.timer_entry = consumer.timer.call_repeatedly(
            float(settings.CHOSEN_HEARTBEAT_SECONDS), _beat, ("worker", consumer.hostname)
        )

    def stop(self, consumer):
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    def shutdown(self, consumer):
        """A warm or cold shutdown: the worker leaves on purpose, it is not a dead one."""
        self.stop(consumer)
        _forget("worker", consumer.hostname)


app.steps["consumer"].add(WorkerHeartbeat)


@signals.worker_init.connect
def lower_the_worker_priority(**kwargs):
    """Jobs yield the CPU to people (CHOSEN_WORKER_NICE): set before the pool starts, so
    its processes inherit it. Raising the nice value needs no privilege."""
    if settings.CHOSEN_WORKER_NICE > 0:
        os.nice(settings.CHOSEN_WORKER_NICE)


@signals.beat_init.connect
def beat_heartbeat(sender, **kwargs):
    """Beat beats after each pass of its scheduler and sleeps at most one heartbeat interval
    between passes (its schedule would let it sleep minutes), so the beats stop when the
    scheduling loop is wedged. ``sender`` is beat's ``celery.beat.Service``."""
    scheduler, node = sender.scheduler, socket.gethostname()
    tick, close = scheduler.tick, scheduler.close

    def tick_and_beat(*args, **kwargs):
        sleep = tick(*args, **kwargs)
        _beat("beat", node)
        return min(sleep, float(settings.CHOSEN_HEARTBEAT_SECONDS))

    def close_and_forget():
        close()
        _forget("beat", node)

    scheduler.tick, scheduler.close = tick_and_beat, close_and_forget
