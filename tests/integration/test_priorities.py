"""Background jobs yield the CPU to people: the Celery worker and its pool processes run at
CHOSEN_WORKER_NICE, so an export on a small server does not slow the annotate page down
(bench/soak.py measures the effect)."""

import os
from pathlib import Path


def nice_of(pid: int) -> int:
    # /proc/<pid>/stat: the 19th field is the nice value (after "(comm)", which may hold spaces)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[16])


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_the_worker_and_its_pool_run_at_a_lower_priority(start_worker, settings):
    worker = start_worker(concurrency=2)
    pool = children_of(worker.process.pid)
    assert len(pool) == 2
    assert settings.CHOSEN_WORKER_NICE == 10
    assert [nice_of(pid) for pid in [worker.process.pid, *pool]] == [10, 10, 10]
    assert nice_of(os.getpid()) == 0  # what started it (the web, here the tests) is not
