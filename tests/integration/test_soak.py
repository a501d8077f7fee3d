"""The short version of the soak with its fault drills (bench/soak.py; the full one runs 100
annotators for 5 minutes): 20 annotators, two leads and an API client for 60 s on a
private PostgreSQL and Redis, while Redis is stopped, PostgreSQL is stopped, the Celery
worker is SIGKILLed during a job and a gunicorn worker is SIGKILLed.

What an annotation team would check afterwards: every judgment the server acknowledged is
stored once, nobody had to redo a submit, errors happened only while a part was down, and
every job the leads asked for ended — the one whose worker was killed within 60 s."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_soak_with_fault_drills_loses_nothing(tmp_path):
    summary = tmp_path / "soak.json"
    run = subprocess.run(
        [
            sys.executable,
            "bench/soak.py",
            "--minutes",
            "1",
            "--annotators",
            "20",
            "--items",
            "3000",
            "--job-every",
            "6",
            "--settle",
            "90",
            "--faults",
            "--fault-scale",
            "0.3",
            "--json",
            str(summary),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = run.stdout + run.stderr[-3000:]
    assert summary.exists(), output
    result = json.loads(summary.read_text())
    assert result["drills"] == [
        "Redis stopped",
        "PostgreSQL stopped",
        "Celery worker SIGKILLed during a job",
        "gunicorn worker SIGKILLed",
    ], output
    assert result["acknowledged"] > 100, output
    assert (result["missing"], result["duplicated"]) == (0, 0), output
    assert (result["one_person_twice"], result["over_target"]) == (0, 0), output
    assert (result["redone"], result["logins_failed"]) == (0, 0), output
    assert result["errors"]["outside"] == {}, output
    assert result["stuck_jobs"] == 0, output
    for job, seen in result["recovery"].items():
        assert seen["status"] == "succeeded" and seen["seconds"] < 60, (job, output)
    assert run.returncode == 0, output
