"""A QC report that fails says so, and why, wherever its figures would be: the dashboard,
the admin and the API; never "No report yet"."""

import pytest
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from annotation.models import Assignment, Judgment
from project.celery import app as celery_app
from qc.models import QCReport
from tasks.models import Item, Role
from tests.factories import member
from tests.qc.test_report import Data

pytestmark = pytest.mark.django_db

DATABASE_REFUSED = (
    "Failed: The report could not be computed: the database refused one of its queries "
    "(the worker's log has the details)."
)


@pytest.fixture
def judged(acme):
    """Two annotators who judged the same two items."""
    data = Data(acme.organization, 2)
    a, b = (member(acme.organization, Role.ANNOTATOR, email=e) for e in ("a@x.org", "b@x.org"))
    for n in range(2):
        data.judge(a, n, 0)
        data.judge(b, n, 1, swapped=True)
    return data


def break_display_orders(project):
    """Bad data the report's SQL cannot read: a display order that is not a JSON list (the
    database's jsonb_array_length refuses it, as SQLite once refused the function itself).
    The judgments are edited too: a report carried on from a good one (qc.tally) reads
    only what changed."""
    with scopes_disabled():
        Assignment.objects.filter(project=project).update(display_order={"not": "a list"})
        Judgment.objects.filter(project=project).update(
            version=F("version") + 1, updated_at=timezone.now()
        )


@pytest.fixture
def compute(as_user, acme, django_capture_on_commit_callbacks):
    """The lead presses "Compute a fresh report"; the job runs here once the request
    commits (a real worker runs jobs in tests/integration)."""

    def press(project):
        celery_app.conf.task_always_eager = True
        try:
            with django_capture_on_commit_callbacks(execute=True):
                response = as_user(acme.lead).post(reverse("qc:recompute", args=[project.pk]))
        finally:
            celery_app.conf.task_always_eager = False
        assert response.status_code == 302
        with scopes_disabled():
            return QCReport.objects.filter(project=project).latest("created_at")

    return press


def dashboard(client, project) -> str:
    return client.get(reverse("qc:dashboard", args=[project.pk])).content.decode()


def test_a_report_that_fails_shows_failed_and_why_on_the_dashboard(judged, acme, as_user, compute):
    break_display_orders(judged.project)
    report = compute(judged.project)
    assert report.status == "failed"
    page = dashboard(as_user(acme.lead), judged.project)
    assert DATABASE_REFUSED.replace("'", "&#x27;") in page
    assert 'id="qc-failed"' in page and "No report has succeeded yet." in page
    assert "No report yet" not in page and 'id="qc-summary"' not in page


def test_after_a_failure_the_last_successful_figures_stay_below_it(judged, acme, as_user, compute):
    assert compute(judged.project).status == "succeeded"
    break_display_orders(judged.project)
    assert compute(judged.project).status == "failed"
    page = dashboard(as_user(acme.lead), judged.project)
    assert page.index('id="qc-failed"') < page.index('id="qc-summary"')
    assert "The figures below are from the last successful report." in page
    assert "<tr><th>Judgments</th><td>4</td></tr>" in page


def test_a_fresh_success_clears_the_failure(judged, acme, as_user, compute):
    break_display_orders(judged.project)
    assert compute(judged.project).status == "failed"
    with scopes_disabled():
        for assignment in Assignment.objects.filter(project=judged.project):
            judgment = assignment.judgment
            assignment.display_order = [judgment.chosen_id, judgment.rejected_id]
            assignment.save(update_fields=["display_order"])
    assert compute(judged.project).status == "succeeded"
    page = dashboard(as_user(acme.lead), judged.project)
    assert 'id="qc-failed"' not in page and 'id="qc-summary"' in page


def test_a_report_being_computed_says_so_and_follows_the_job(judged, acme, as_user):
    with scopes_disabled():
        QCReport.objects.create(organization=acme.organization, project=judged.project)
    page = dashboard(as_user(acme.lead), judged.project)
    assert "A fresh report is being computed" in page and 'data-status="queued"' in page
    assert "js/job-progress" in page  # reloads the page when the job has finished


def test_any_other_fault_is_named_without_its_traceback_or_data(judged, acme, as_user, compute):
    # An item whose candidate key is not a list of ids: Python, not SQL, trips over it.
    with scopes_disabled():
        for item in Item.objects.filter(project=judged.project):
            Item.objects.filter(pk=item.pk).update(candidate_key=f"secret-words-{item.pk}")
    report = compute(judged.project)
    assert report.failure == (
        "Failed: The report could not be computed: an unexpected error "
        "(the worker's log has the details)."
    )
    assert "secret" not in report.error and "Traceback" not in report.error


def test_the_admin_lists_and_shows_a_failed_report_with_its_reason(judged, acme, as_user, compute):
    break_display_orders(judged.project)
    report = compute(judged.project)
    client = as_user(acme.lead)
    listing = client.get(reverse("admin:qc_qcreport_changelist")).content.decode()
    assert DATABASE_REFUSED.replace("'", "&#x27;") in listing
    detail = client.get(reverse("admin:qc_qcreport_change", args=[report.pk])).content.decode()
    assert detail.count(DATABASE_REFUSED.replace("'", "&#x27;")) == 2  # status and result


def test_the_api_serves_the_failure_and_where_the_last_good_report_is(
    judged, acme, as_user, compute
):
    client = as_user(acme.lead)
    url = f"/api/v1/projects/{judged.project.pk}/qc-report"
    good = compute(judged.project)
    assert client.get(url).json()["failure"] == ""
    break_display_orders(judged.project)
    failed = compute(judged.project)
    latest = client.get(url).json()
    assert (latest["id"], latest["status"], latest["failure"]) == (
        failed.pk,
        "failed",
        DATABASE_REFUSED,
    )
    assert latest["last_succeeded"] == f"/api/v1/qc-reports/{good.pk}"
    assert client.get(f"/api/v1/qc-reports/{failed.pk}").json()["failure"] == DATABASE_REFUSED


def test_the_api_says_a_first_report_is_being_computed(judged, acme, as_user):
    with scopes_disabled():
        pending = QCReport.objects.create(organization=acme.organization, project=judged.project)
    response = as_user(acme.lead).get(f"/api/v1/projects/{judged.project.pk}/qc-report")
    assert response.status_code == 404
    assert f"/api/v1/qc-reports/{pending.pk}" in str(response.json())


def test_how_each_report_ended_is_on_the_audit_trail(judged, acme, compute):
    """Requested by the lead, then computed, or failed with the reason the lead reads."""
    from tasks.audit import Action
    from tests.tasks.test_audit import events

    good = compute(judged.project)
    break_display_orders(judged.project)
    bad = compute(judged.project)
    trail = [
        (e.action, e.object_id, e.actor_label, e.data.get("error"))
        for e in events(acme.organization, object_type="qc_report")
    ]
    assert trail == [
        (Action.QC_REPORT_CREATED, str(good.pk), acme.lead.email, None),
        (Action.QC_REPORT_SUCCEEDED, str(good.pk), "system", None),
        (Action.QC_REPORT_CREATED, str(bad.pk), acme.lead.email, None),
        (Action.QC_REPORT_FAILED, str(bad.pk), "system", DATABASE_REFUSED.removeprefix("Failed: ")),
    ]
