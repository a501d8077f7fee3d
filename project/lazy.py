"""Heavy libraries imported on first use instead of at start-up.

Every web worker and every Celery process imports the whole URL tree or every task module
when it starts. ``openai`` (with pydantic and httpx, about 50 MB per process) is needed only
by a process that talks to an LLM server, and ``numpy`` (about 20 MB) only by one that fits
a Bradley-Terry model; imported at start-up, they were a quarter of an idle server's memory
(bench/vs_label_studio.py). ``lazy_module(name)`` returns the module object at once and
executes it on the first attribute access (the standard library's ``LazyLoader``); a later
``import name`` anywhere gets the same object."""

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
