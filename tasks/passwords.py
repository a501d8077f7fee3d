"""Password hashing that does not slow annotation down.

A log-in costs about half a second of CPU (PBKDF2-SHA256 at Django's 1,000,000 iterations,
on purpose). When a team of 100 starts its shift, those log-ins used to take both cores of a
small server for ten seconds, and every request waited behind them: bench/soak.py measured
submit+next p95 1,098 ms in that first half minute against 21 ms after.

``LowPriorityPBKDF2PasswordHasher`` is Django's hasher, same algorithm, same stored hashes,
same cost, computed on one thread per web process that runs at a lower CPU priority (a
higher nice value; on Linux the nice value is per thread, and raising it needs no
privilege). hashlib releases the GIL while it hashes, so with gunicorn's threads (16 per
worker; with 4 each stayed busy waiting for log-ins and nothing was gained) the other
requests of the process go on, and the kernel gives them the CPU first: 32 ms p95 in the
same storm, log-ins p50 2.0 s instead of 1.0 s. A log-in is not slower when nothing else
runs.
"""

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pid: int | None = None


def _lower_this_thread() -> None:
    niceness = settings.CHOSEN_PASSWORD_HASH_NICE
    if niceness and hasattr(os, "setpriority"):
        # Refused in a locked-down container: it hashes at normal priority then.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


def _hashing_thread() -> ThreadPoolExecutor:
    """This process's hashing thread (a forked web worker starts its own)."""
    global _executor, _pid
    with _lock:
        if _executor is None or _pid != os.getpid():
            _executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="password-hash", initializer=_lower_this_thread
            )
            _pid = os.getpid()
        return _executor


class LowPriorityPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """PBKDF2PasswordHasher (``pbkdf2_sha256``), hashed at a lower CPU priority."""

    def encode(self, password, salt, iterations=None):
        parent = super().encode
        return _hashing_thread().submit(parent, password, salt, iterations).result()
