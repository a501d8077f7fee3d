"""gunicorn's settings, read from the working directory before the command line's (compose
and the image run gunicorn in /app, the benches in the checkout)."""

import sys


def post_fork(server, worker):
    """A web process serves with threads (WEB_THREADS) whose requests mostly wait on
    PostgreSQL. A thread back from a query waits for the thread running Python to let go of
    the GIL, up to the switch interval at each of a request's 10-30 queries: 5 ms by default,
    1 ms here. Under bench/chat_load.py's load, at 3 x 16 threads, the annotators'
    submit+next p95 was 172 ms with this alone against 184-410 ms without (ARCHITECTURE.md,
    "Web processes")."""
    sys.setswitchinterval(0.001)
