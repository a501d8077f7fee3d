"""Export jobs through the API, the lead's page and the command: tenancy, token scope,
roles, downloads that stay inside the export's folder."""

import hashlib
import json

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from exports.models import Export
from project.celery import app as celery_app
from tests.exports.test_pairs import voted  # noqa: F401 (fixture)
from tests.factories import api_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def jobs_here(settings, tmp_path, django_capture_on_commit_callbacks):
    """Export jobs run in the test as soon as the request commits (a real worker runs other
    jobs in tests/integration), writing under a temporary media root."""
    celery_app.conf.task_always_eager = True

    class Jobs:
        media = tmp_path / "media"

        @staticmethod
        def run():
            return django_capture_on_commit_callbacks(execute=True)

    yield Jobs
    celery_app.conf.task_always_eager = False


def bearer(organization):
    return {"HTTP_AUTHORIZATION": f"Bearer {api_token(organization)[1]}"}


def test_a_pipeline_token_exports_and_downloads(voted, acme, globex, client, jobs_here):  # noqa: F811
    headers = bearer(acme.organization)
    url = f"/api/v1/projects/{voted.project.pk}/exports"
    body = {"format": "trl", "options": {"policy": "all", "ratios": [1.0], "seed": 4}}
    with jobs_here.run():
        response = client.post(url, body, content_type="application/json", **headers)
    assert response.status_code == 202, response.content
    export = client.get(response["Location"], **headers).json()
    assert export["status"] == "succeeded" and export["counts"] == {"train": 7}
    names = [f["name"] for f in export["files"]]
    assert names == ["README.md", "train.jsonl", "train.provenance.jsonl"]
    download = client.get(f"/api/v1/exports/{export['id']}/files/train.jsonl", **headers)
    assert download.status_code == 200
    assert download["Content-Type"] == "application/octet-stream"
    assert "attachment" in download["Content-Disposition"]
    content = b"".join(download.streaming_content)
    entry = next(f for f in export["files"] if f["name"] == "train.jsonl")
    assert hashlib.sha256(content).hexdigest() == entry["sha256"]
    assert len(content.splitlines()) == 7
    # the files live under the organization and project
    with scopes_disabled():
        made = Export.objects.get()
    assert (
        jobs_here.media / "exports" / str(acme.organization.pk) / str(voted.project.pk)
    ).is_dir()
    assert made.created_by is None  # a token, not a person
    # another organization's token sees none of it
    other = bearer(globex.organization)
    assert client.get(f"/api/v1/exports/{export['id']}", **other).status_code == 404
    assert (
        client.get(f"/api/v1/exports/{export['id']}/files/train.jsonl", **other).status_code == 404
    )
    assert client.post(url, body, content_type="application/json", **other).status_code == 404


@pytest.mark.parametrize(
    "name",
    ["../manifest.json", "..%2F..%2Fsettings.py", "%2Fetc%2Fpasswd", ".export-x", "nope.jsonl"],
)
def test_file_names_cannot_leave_the_export(voted, acme, as_user, jobs_here, name):  # noqa: F811
    client = as_user(acme.lead)
    with jobs_here.run():
        response = client.post(
            f"/api/v1/projects/{voted.project.pk}/exports",
            {"format": "csv", "options": {"policy": "all"}},
            content_type="application/json",
        )
    export_id = response.json()["id"]
    assert client.get(f"/api/v1/exports/{export_id}/files/{name}").status_code == 404


def test_bad_requests_are_refused_with_nothing_made(voted, acme, as_user, jobs_here):  # noqa: F811
    client = as_user(acme.lead)
    url = f"/api/v1/projects/{voted.project.pk}/exports"
    for body, message in [
        ({"format": "docx"}, "is not a valid choice"),
        ({"format": "trl", "options": {"ratios": [0.9, 0.3]}}, "add up to 1"),
        ({"format": "trl", "options": {"created_by__password": "x"}}, "unknown option"),
        ({"format": "trl", "options": {"policy": "vote"}}, "policy must be one of"),
        # values of the wrong type: a 400 naming the option, never a 500
        ({"format": "csv", "options": {"min_agreement": "x"}}, "min_agreement must be a number"),
        ({"format": "csv", "options": {"ratios": 5}}, "ratios must be a list of numbers"),
        ({"format": "csv", "options": {"ratios": ["a"]}}, "ratios must be a list of numbers"),
        ({"format": "csv", "options": {"dimension": 5}}, "dimension must be a string"),
        ({"format": "csv", "options": {"seed": 1.5}}, "seed must be a whole number"),
        ({"format": "csv", "options": {"csv_raw": "yes"}}, "csv_raw must be true or false"),
        ({"format": "csv", "options": {"sources": [1]}}, "sources must be a list of strings"),
        ({"format": "csv", "options": {"near_identical": "0.9"}}, "near_identical must be"),
        ({"format": "csv", "options": {"conversation": "merge"}}, "conversation must be one of"),
        ({"format": "csv", "options": ["policy"]}, "Expected a dictionary"),
    ]:
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 400 and message in json.dumps(response.json()), body
    with scopes_disabled():
        assert not Export.objects.exists()
    assert (
        as_user(acme.annotator)
        .post(url, {"format": "trl"}, content_type="application/json")
        .status_code
        == 403
    )


def test_the_lead_exports_from_the_project_page(voted, acme, as_user, jobs_here):  # noqa: F811
    client = as_user(acme.lead)
    page = reverse("exports:page", args=[voted.project.pk])
    assert client.get(page).status_code == 200
    with jobs_here.run():
        response = client.post(page, {"format": "llama-factory", "policy": "all", "split": "80/20"})
    assert response.status_code == 302
    html = client.get(page).content.decode()
    with scopes_disabled():
        export = Export.objects.get()
    assert export.status == "succeeded" and "dataset_info.json" in html
    link = reverse("exports:download", args=[voted.project.pk, export.pk, "dataset_info.json"])
    info = b"".join(client.get(link).streaming_content)
    assert json.loads(info)
    bad = client.post(page, {"format": "trl", "policy": "all", "min_agreement": "2"})
    assert (
        bad.status_code == 400 and "min_agreement must be between 0 and 1" in bad.content.decode()
    )
    assert as_user(acme.annotator).get(page).status_code == 403


def test_a_failed_export_says_failed_and_why_on_the_page_in_the_admin_and_the_api(
    voted,  # noqa: F811
    acme,
    as_user,
    jobs_here,
    settings,
    tmp_path,
):
    # A media root the worker cannot make folders in (a file where the folder should be):
    # the fault a full or read-only disk gives, with the operating system's own words.
    settings.MEDIA_ROOT = tmp_path / "not-a-folder"
    settings.MEDIA_ROOT.write_text("")
    client = as_user(acme.lead)
    page = reverse("exports:page", args=[voted.project.pk])
    with jobs_here.run():
        client.post(page, {"format": "trl", "policy": "all", "split": "80/20"})
    with scopes_disabled():
        export = Export.objects.get()
    failure = (
        "Failed: The export could not be written: the server's file system said \"Not a "
        "directory\" (the worker's log has the details)."
    )
    assert export.failure == failure
    shown = failure.replace("'", "&#x27;").replace('"', "&quot;")
    assert f'<strong class="failed">{shown}</strong>' in client.get(page).content.decode()
    listing = client.get(reverse("admin:exports_export_changelist")).content.decode()
    assert shown in listing
    detail = client.get(reverse("admin:exports_export_change", args=[export.pk])).content.decode()
    assert detail.count(shown) == 2  # the status, and where the files would be
    assert client.get(f"/api/v1/exports/{export.pk}").json()["failure"] == failure
