"""POST /api/v1/projects/{id}/imports and /api/v1/projects/import-potato, as a pipeline
or a lead's browser calls them."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_scopes import scopes_disabled

from project.celery import app as celery_app
from tasks.models import ImportJob, Project, Prompt
from tests.factories import api_token
from tests.tasks.test_potato_import import SEED_DIR
from tests.tasks.test_prompt_import import jsonl, row

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


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


def test_large_upload_becomes_a_job_with_progress(
    acme, as_user, settings, django_capture_on_commit_callbacks
):
    settings.CHOSEN_IMPORT_SYNC_MAX_BYTES = 10
    client = as_user(acme.lead)
    celery_app.conf.task_always_eager = True  # the worker's own test is tests/integration
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = post_import(
                client, acme.project, upload("d.jsonl", jsonl(*(row(n) for n in range(50))))
            )
    finally:
        celery_app.conf.task_always_eager = False
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
