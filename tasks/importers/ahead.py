"""Two threads for one import: reading and checking rows is Python work, writing them is
mostly waiting on PostgreSQL with the interpreter's lock released; done in turn, each waits
for the other. ``read_ahead`` runs the reading in a thread of its own, a few chunks ahead
of the caller, and ``import_mode`` makes the two threads hand the lock over promptly.
"""

import contextlib
import gc
import queue
import sys
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

# Python lets a thread that wants the interpreter's lock wait a whole switch interval (5 ms)
# for a busy one, many times per chunk, while PostgreSQL sits idle: with 0.1 ms, 200,000
# feedback rows imported 25% faster (bench/feedback_import.py).
SWITCH_INTERVAL = 0.0001  # seconds


@contextlib.contextmanager
def import_mode():
    """While a large import runs: a short switch interval, so that its two threads hand the
    interpreter's lock over promptly, and the cyclic garbage collector paused (millions of
    short-lived rows and dicts, none in a cycle: its full passes over them, and over
    everything Django holds, cost ~15% of a large import). The process's own settings come
    back afterwards."""
    switch = sys.getswitchinterval()
    collecting = gc.isenabled()
    sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(switch)
        if collecting:
            gc.enable()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


def read_ahead(entries: Iterator[T], *, chunk: int = 500, depth: int = 4) -> Iterator[T]:
    """The items of ``entries`` in their order, taken from it by a thread of its own up to
    ``depth`` chunks of ``chunk`` ahead of the caller. What ``entries`` raises is raised
    here, after the items it gave before. ``entries`` must not use the database (the
    connection is the caller's, inside its transaction) nor anything the caller changes
    meanwhile. When the caller stops early (an error, or it closes this generator), the
    thread stops at its next chunk and is waited for."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                handoff.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        batch: list = []
        try:
            for item in entries:
                batch.append(item)
                if len(batch) >= chunk:
                    if not put(batch):
                        return
                    batch = []
        except BaseException as error:  # handed to the caller, after what came before
            put(batch) and put(_Raised(error))
            return
        put(batch) and put(_DONE)

    thread = threading.Thread(target=produce, name="import-reader", daemon=True)
    thread.start()
    try:
        while True:
            value = handoff.get()
            if value is _DONE:
                return
            if isinstance(value, _Raised):
                raise value.error
            yield from value
    finally:
        stop.set()
        thread.join()
