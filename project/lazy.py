"""Heavy libraries imported on first use instead of at start-up.

Every web worker and every Celery process imports the whole URL tree or every task module
when it starts. ``openai`` (with pydantic and httpx, about 50 MB per process) is needed only
by a process that talks to an LLM server, and ``numpy`` (about 20 MB) only by one that fits
a Bradley-Terry model; imported at start-up, they were a quarter of an idle server's memory
(bench/vs_label_studio.py).

``lazy_module(name)`` is a stand-in whose first attribute access imports the module (under
the import system's lock: threads that ask at once all get the finished module) and passes
every access on to it. It is deliberately not the standard library's ``LazyLoader``, which
puts a half-made module into ``sys.modules``: psycopg looks for numpy there before dumping
an integer, so every query loaded it, and with gunicorn's threads one request could see it
half-executed (``module 'numpy' has no attribute 'integer'``, found by bench/chat_load.py).
"""

import importlib
from types import ModuleType


class _LazyModule:
    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str):
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (loaded)'}>"


def lazy_module(name: str):
    """``name``, imported when first used (see the module's docstring)."""
    return _LazyModule(name)
