"""POST /api/v1/projects/{id}/imports and /api/v1/projects/import-potato, as a pipeline
or a lead's browser calls them."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_scopes import scopes_disabled

from project.celery import app as celery_app
from tasks.models import ImportJob, Project, Prompt
from tests.factories import api_token
from tests.tasks.test_potato_import import SEED_DIR
from tests.tasks.test_prompt_import import jsonl, row

pytestmark = pytest.mark.django_db


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def post_import(client, project, *files, **fields):
    return client.post(
        f"/api/v1/projects/{project.pk}/imports",
        {"file": list(files), **fields},
        format="multipart",
    )


def prompt_count(project) -> int:
    with scopes_disabled():
        return Prompt.objects.filter(project=project).count()


def test_lead_imports_a_small_file_at_once(acme, as_user):
    response = post_import(
        as_user(acme.lead), acme.project, upload("d.jsonl", jsonl(row(1), row(2)))
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "succeeded" and body["report"]["prompts_created"] == 2
    assert body["progress"]["fraction"] == 1.0
    assert prompt_count(acme.project) == 2


def test_bad_rows_are_a_400_listing_each_problem_and_nothing_is_written(acme, as_user):
    bad = row(2)
    del bad["text"]
    response = post_import(as_user(acme.lead), acme.project, upload("d.jsonl", jsonl(row(1), bad)))
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "text",
            "message": "d.jsonl, line 2, id 'p2', key 'text': missing",
            "code": "invalid",
            "file": "d.jsonl",
            "where": "line 2",
            "key": "text",
            "id": "p2",
        }
    ]
    assert prompt_count(acme.project) == 0


def test_skip_invalid_through_the_api(acme, as_user):
    bad = row(2, response_a="")
    response = post_import(
        as_user(acme.lead), acme.project, upload("d.jsonl", jsonl(row(1), bad)), skip_invalid="true"
    )
    assert response.status_code == 201
    assert response.json()["report"]["problems"][0]["key"] == "response_a"
    assert prompt_count(acme.project) == 1


def test_wrong_file_type_is_a_400(acme, as_user):
    response = post_import(as_user(acme.lead), acme.project, upload("d.txt", b"hello"))
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "d.txt: use .json, .jsonl or .csv"


def test_organization_token_can_import(client, acme):
    _, key = api_token(acme.organization)
    response = client.post(
        f"/api/v1/projects/{acme.project.pk}/imports",
        {"file": [upload("d.csv", b"id,text,response_a,response_b\n1,Q?,x,y\n")]},
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    assert response.status_code == 201
    assert prompt_count(acme.project) == 1


def test_annotator_cannot_import(acme, as_user):
    response = post_import(as_user(acme.annotator), acme.project, upload("d.jsonl", jsonl(row(1))))
    assert response.status_code == 403
    assert prompt_count(acme.project) == 0


def test_importing_into_another_organizations_project_is_404(acme, globex, as_user):
    response = post_import(as_user(acme.lead), globex.project, upload("d.jsonl", jsonl(row(1))))
    assert response.status_code == 404
    assert prompt_count(globex.project) == 0


def test_another_organizations_import_job_is_404(acme, globex, as_user):
    response = post_import(as_user(globex.lead), globex.project, upload("d.jsonl", jsonl(row(1))))
    job_id = response.json()["id"]
    assert as_user(acme.lead).get(f"/api/v1/imports/{job_id}").status_code == 404
    assert as_user(globex.lead).get(f"/api/v1/imports/{job_id}").status_code == 200


def post_fifty_rows_as_a_job(client, project, capture_on_commit):
    """50 rows posted over CHOSEN_IMPORT_SYNC_MAX_BYTES (set low by the caller): a job, run
    here once the request commits (the worker's own test is tests/integration)."""
    celery_app.conf.task_always_eager = True
    try:
        with capture_on_commit(execute=True):
            return post_import(
                client, project, upload("d.jsonl", jsonl(*(row(n) for n in range(50))))
            )
    finally:
        celery_app.conf.task_always_eager = False


def test_large_upload_becomes_a_job_with_progress(
    acme, as_user, settings, django_capture_on_commit_callbacks
):
    settings.CHOSEN_IMPORT_SYNC_MAX_BYTES = 10
    client = as_user(acme.lead)
    response = post_fifty_rows_as_a_job(client, acme.project, django_capture_on_commit_callbacks)
    assert response.status_code == 202
    assert response["Location"] == f"/api/v1/imports/{response.json()['id']}"
    job = client.get(response["Location"]).json()
    assert job["status"] == "succeeded" and job["report"]["prompts_created"] == 50
    assert job["progress"] == {
        "rows": 50,
        "bytes": job["progress"]["total_bytes"],
        "total_bytes": job["progress"]["total_bytes"],
        "fraction": 1.0,
    }


def test_potato_config_and_data_through_the_api(acme, as_user):
    client = as_user(acme.lead)
    response = client.post(
        "/api/v1/projects/import-potato",
        {
            "config": upload("config.yaml", (SEED_DIR / "config.yaml").read_bytes()),
            "data": [upload("sample-data.json", (SEED_DIR / "sample-data.json").read_bytes())],
        },
    )
    assert response.status_code == 201, response.content
    with scopes_disabled():
        project = Project.objects.get(
            organization=acme.organization, name="DPO Preference Data Collection"
        )
    assert response.json()["project"] == project.pk
    assert prompt_count(project) == 10
    assert any("'port'" in w for w in response.json()["report"]["warnings"])


def test_potato_import_without_its_data_file_is_a_400(acme, as_user):
    response = as_user(acme.lead).post(
        "/api/v1/projects/import-potato",
        {"config": upload("config.yaml", (SEED_DIR / "config.yaml").read_bytes())},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == (
        "config.yaml, key 'data_files[0]': data file 'sample-data.json' was not uploaded"
    )
    with scopes_disabled():
        assert not Project.objects.filter(name="DPO Preference Data Collection").exists()
        assert ImportJob.objects.get().status == "failed"


def test_uploads_are_removed_once_imported(acme, as_user, settings):
    post_import(as_user(acme.lead), acme.project, upload("d.jsonl", jsonl(row(1))))
    leftovers = [p for p in (settings.MEDIA_ROOT / "imports").rglob("*") if p.is_file()]
    assert leftovers == []


def test_job_list_is_the_organizations(acme, globex, as_user):
    post_import(as_user(acme.lead), acme.project, upload("d.jsonl", jsonl(row(1))))
    post_import(as_user(globex.lead), globex.project, upload("d.jsonl", jsonl(row(1))))
    jobs = as_user(acme.lead).get("/api/v1/imports/").json()["results"]
    assert [j["project"] for j in jobs] == [acme.project.pk]
    assert json.dumps(jobs).count("d.jsonl") == 1


# --- abuse limits (CHOSEN_IMPORT_MAX_BYTES, CHOSEN_IMPORT_MAX_ROWS) -------------------------


def stored_uploads(settings) -> list:
    return [p for p in (settings.MEDIA_ROOT / "imports").rglob("*") if p.is_file()]


def job_count() -> int:
    with scopes_disabled():
        return ImportJob.objects.count()


def over_one_megabyte() -> bytes:
    rows = jsonl(*(row(n, text=f"Prompt number {n}? " + "x" * 2000) for n in range(600)))
    assert len(rows) > 2**20
    return rows


def test_upload_over_the_byte_limit_is_a_413_and_nothing_is_stored(acme, as_user, settings):
    settings.CHOSEN_IMPORT_MAX_BYTES = 2**20
    response = post_import(as_user(acme.lead), acme.project, upload("d.jsonl", over_one_megabyte()))
    assert response.status_code == 413
    assert response.json() == {
        "errors": [
            {
                "field": None,
                "message": "The files of one import may total at most 1 MB "
                "(CHOSEN_IMPORT_MAX_BYTES). Split the data into several imports.",
                "code": "too_large",
            }
        ]
    }
    assert (prompt_count(acme.project), job_count(), stored_uploads(settings)) == (0, 0, [])


def test_byte_limit_counts_all_files_of_one_import_together(acme, as_user, settings):
    first, second = jsonl(row(1)), jsonl(row(2))
    settings.CHOSEN_IMPORT_MAX_BYTES = len(first) + len(second) - 1
    response = post_import(
        as_user(acme.lead), acme.project, upload("a.jsonl", first), upload("b.jsonl", second)
    )
    assert response.status_code == 413
    assert "at most" in response.json()["errors"][0]["message"]
    assert (prompt_count(acme.project), job_count()) == (0, 0)


def test_byte_limit_holds_when_the_csrf_check_reads_the_body_first(acme, settings):
    """A browser session's POST is read by the CSRF check before the view runs: the limit
    must already be counting then."""
    from django.test import Client

    settings.CHOSEN_IMPORT_MAX_BYTES = 2**20
    client = Client(enforce_csrf_checks=True)
    client.force_login(acme.lead)
    token = "a" * 32
    client.cookies["csrftoken"] = token
    response = client.post(
        f"/api/v1/projects/{acme.project.pk}/imports",
        {"file": [upload("d.jsonl", over_one_megabyte())]},
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 413
    message = response.json()["errors"][0]["message"]
    # Stopped while arriving: the size checked after reading would be named ("these are").
    assert "1 MB (CHOSEN_IMPORT_MAX_BYTES)" in message and "these are" not in message
    small = client.post(
        f"/api/v1/projects/{acme.project.pk}/imports",
        {"file": [upload("d.jsonl", jsonl(row(1)))]},
        HTTP_X_CSRFTOKEN=token,
    )
    assert small.status_code == 201, small.content
    assert prompt_count(acme.project) == 1


def test_potato_upload_over_the_byte_limit_is_a_413(acme, as_user, settings):
    settings.CHOSEN_IMPORT_MAX_BYTES = 1000
    response = as_user(acme.lead).post(
        "/api/v1/projects/import-potato",
        {
            "config": upload("config.yaml", (SEED_DIR / "config.yaml").read_bytes()),
            "data": [upload("sample-data.json", (SEED_DIR / "sample-data.json").read_bytes())],
        },
    )
    assert response.status_code == 413
    assert "0.001 MB (CHOSEN_IMPORT_MAX_BYTES)" in response.json()["errors"][0]["message"]
    with scopes_disabled():
        assert not Project.objects.filter(name="DPO Preference Data Collection").exists()
    assert job_count() == 0


def test_too_many_rows_is_a_400_even_when_skipping_invalid_rows(acme, as_user, settings):
    settings.CHOSEN_IMPORT_MAX_ROWS = 3
    response = post_import(
        as_user(acme.lead),
        acme.project,
        upload("d.jsonl", jsonl(*(row(n) for n in range(5)))),
        skip_invalid="true",
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == (
        "d.jsonl, line 4: the import holds more than 3 data rows, the limit of one import "
        "(CHOSEN_IMPORT_MAX_ROWS); split the data into several imports"
    )
    assert prompt_count(acme.project) == 0


def test_row_limit_counts_all_files_of_one_import_together(acme, as_user, settings):
    settings.CHOSEN_IMPORT_MAX_ROWS = 3
    response = post_import(
        as_user(acme.lead),
        acme.project,
        upload("a.jsonl", jsonl(row(1), row(2))),
        upload("b.csv", b"id,text,response_a,response_b\np3,Q3?,x,y\np4,Q4?,x,y\n"),
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"].startswith("b.csv, line 3: the import holds")
    assert prompt_count(acme.project) == 0


@pytest.fixture
def over_the_row_limit(acme, as_user, settings, django_capture_on_commit_callbacks):
    """Fifty rows posted as a background job against a limit of forty: the lead's client
    and the job as the API shows it."""
    settings.CHOSEN_IMPORT_SYNC_MAX_BYTES = 10
    settings.CHOSEN_IMPORT_MAX_ROWS = 40
    client = as_user(acme.lead)
    response = post_fifty_rows_as_a_job(client, acme.project, django_capture_on_commit_callbacks)
    assert response.status_code == 202
    return client, client.get(response["Location"]).json()


def test_a_large_import_over_the_row_limit_fails_its_job(acme, over_the_row_limit):
    _, job = over_the_row_limit
    assert job["status"] == "failed"
    assert "more than 40 data rows" in job["errors"][0]["message"]
    assert prompt_count(acme.project) == 0


def test_a_failed_import_job_says_failed_and_why_in_the_api_and_the_admin(over_the_row_limit):
    client, job = over_the_row_limit
    assert job["failure"].startswith("Failed: d.jsonl, line 41: the import holds more than 40")
    shown = job["failure"].replace("'", "&#x27;")
    assert shown in client.get(reverse("admin:tasks_importjob_changelist")).content.decode()
    page = client.get(reverse("admin:tasks_importjob_change", args=[job["id"]])).content.decode()
    assert f'<p class="errornote" id="job-failure">{shown}</p>' in page
    assert "No report yet" not in page


def test_two_files_of_one_name_are_refused(acme, as_user):
    response = post_import(
        as_user(acme.lead),
        acme.project,
        upload("d.jsonl", jsonl(row(1))),
        upload("d.jsonl", jsonl(row(2))),
    )
    assert response.status_code == 400
    assert (
        response.json()["errors"][0]["message"] == "d.jsonl: two files have this name; rename one"
    )
    assert job_count() == 0


def test_too_many_files_is_a_400_in_the_api_error_shape(acme, as_user, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    files = [upload(f"d{n}.jsonl", jsonl(row(n))) for n in range(3)]
    response = post_import(as_user(acme.lead), acme.project, *files)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "file", "message": "Send at most 2 files at once.", "code": "too_many_files"}
    ]
    assert job_count() == 0


# --- the lead's admin pages ------------------------------------------------------------------


def test_admin_import_over_the_byte_limit_is_a_form_error(acme, as_user, settings):
    from django.urls import reverse

    settings.CHOSEN_IMPORT_MAX_BYTES = 2**20
    page = as_user(acme.lead).post(
        reverse("admin:tasks_project_import", args=[acme.project.pk]),
        {"files": [upload("d.jsonl", over_one_megabyte())]},
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "may total at most 1 MB (CHOSEN_IMPORT_MAX_BYTES)" in html
    assert "these are" not in html  # stopped while arriving, not after being spooled
    assert (prompt_count(acme.project), job_count(), stored_uploads(settings)) == (0, 0, [])


def test_admin_potato_import_over_the_byte_limit_is_a_form_error(acme, as_user, settings):
    from django.urls import reverse

    settings.CHOSEN_IMPORT_MAX_BYTES = 1000
    page = as_user(acme.lead).post(
        reverse("admin:tasks_project_import_potato"),
        {
            "config": upload("config.yaml", (SEED_DIR / "config.yaml").read_bytes()),
            "data": [upload("sample-data.json", (SEED_DIR / "sample-data.json").read_bytes())],
        },
    )
    assert page.status_code == 200
    assert "may total at most 0.001 MB (CHOSEN_IMPORT_MAX_BYTES)" in page.content.decode()
    assert (job_count(), stored_uploads(settings)) == (0, [])


def test_admin_import_still_checks_csrf(acme):
    """The import pages read the body themselves (to count it), so they make the CSRF
    check themselves: a forged form post is still refused."""
    from django.test import Client
    from django.urls import reverse

    client = Client(enforce_csrf_checks=True)
    client.force_login(acme.lead)
    url = reverse("admin:tasks_project_import", args=[acme.project.pk])
    forged = client.post(url, {"files": [upload("d.jsonl", jsonl(row(1)))]})
    assert forged.status_code == 403
    assert job_count() == 0
    client.get(url)  # the form sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    sent = client.post(
        url, {"files": [upload("d.jsonl", jsonl(row(1)))], "csrfmiddlewaretoken": token}
    )
    assert sent.status_code == 302
    assert job_count() == 1
