"""The settings of the workers and beat that tests/integration/test_worker_recovery.py
starts: production's, with the sweeper's periods cut from tens of seconds to seconds so
that a drill fits in the suite's time (bench/worker_recovery.py measures the real ones)."""

from project.settings import *  # noqa: F403

CHOSEN_JOB_HEARTBEAT_SECONDS = 0.5
CHOSEN_JOB_STALE_SECONDS = 3
CHOSEN_JOB_SWEEP_SECONDS = 1
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,  # noqa: F405
    "sweep-jobs": {
        "task": "tasks.jobs.sweep_jobs",
        "schedule": float(CHOSEN_JOB_SWEEP_SECONDS),
        "options": {"expires": CHOSEN_JOB_SWEEP_SECONDS},
    },
}
