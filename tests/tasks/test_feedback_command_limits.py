"""``manage.py import_feedback --max-bytes / --max-rows``: the operator's route for a log
over the upload limits, which stay the limits of uploads."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_scopes import scopes_disabled

from tasks.models import FeedbackSignal

pytestmark = pytest.mark.django_db


def log_file(tmp_path, rows: int):
    path = tmp_path / "log.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"ev-{n}", "prompt": f"Q{n}?", "reply": f"A{n}.", "thumbs": "up"})
            + "\n"
            for n in range(rows)
        )
    )
    return path


def test_a_file_over_the_upload_limit_needs_the_operator_to_say_so(acme, tmp_path, settings):
    settings.CHOSEN_IMPORT_MAX_BYTES = 100
    path = log_file(tmp_path, 5)
    ref = f"{acme.organization.slug}/{acme.project.pk}"

    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_feedback", ref, str(path))
    call_command("import_feedback", ref, str(path), "--max-bytes", "1M")

    with scopes_disabled():
        assert FeedbackSignal.objects.filter(project=acme.project).count() == 5
    assert settings.CHOSEN_IMPORT_MAX_BYTES == 100  # uploads keep their limit


def test_max_rows_raises_the_row_limit_of_one_import(acme, tmp_path, settings, capsys):
    settings.CHOSEN_IMPORT_MAX_ROWS = 3
    path = log_file(tmp_path, 5)
    ref = f"{acme.organization.slug}/{acme.project.pk}"

    with pytest.raises(CommandError):
        call_command("import_feedback", ref, str(path))
    assert "more than 3 data rows" in capsys.readouterr().err
    call_command("import_feedback", ref, str(path), "--max-rows", "5")

    with scopes_disabled():
        assert FeedbackSignal.objects.filter(project=acme.project).count() == 5


def test_a_size_that_is_not_one_is_refused(acme, tmp_path):
    with pytest.raises(CommandError, match="is not a size"):
        call_command(
            "import_feedback",
            f"{acme.organization.slug}/{acme.project.pk}",
            str(log_file(tmp_path, 1)),
            "--max-bytes",
            "lots",
        )
