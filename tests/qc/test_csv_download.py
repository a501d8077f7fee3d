"""The QC report's CSV download never hands a spreadsheet a formula: every text cell that
Excel, LibreOffice or Sheets would run (a leading =, +, -, @, tab or carriage return)
comes out with a leading apostrophe; numbers stay numbers."""

import csv
import io

import pytest
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from qc.models import QCReport
from qc.services import run_report
from tasks.csvsafe import FORMULA_PREFIXES
from tasks.models import Role
from tests.factories import member
from tests.qc.test_report import QUESTIONS, Data

pytestmark = pytest.mark.django_db

HOSTILE = {
    "\t": "\t=HYPERLINK(1)@x.org",
    "\r": "\r=cmd|' /C calc'!A0@x.org",
    "=": "=1+2@x.org",
    "+": "+1+2@x.org",
    "-": "-1+2@x.org",
    "@": "@SUM(1)@x.org",
}
PLAIN = "plain@x.org"
# The schema allows identifiers only, but the CSV does not count on it: a project's
# questions may come from before a rule or from a direct write.
HOSTILE_QUESTION = "-dimension"


def download_csv(client, project) -> list[list[str]]:
    response = client.get(reverse("qc:download", args=[project.pk, "csv"]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_hostile_cells_in_the_csv_download_are_neutralised(acme, as_user):
    assert set(HOSTILE) == set(FORMULA_PREFIXES)  # every prefix the escaper knows is tried
    data = Data(acme.organization, 2, overlap=7)
    data.project.questions = [QUESTIONS[0], {**QUESTIONS[1], "name": HOSTILE_QUESTION}]
    with scopes_disabled():
        data.project.save(update_fields=["questions"])
    emails = [*HOSTILE.values(), PLAIN]
    people = [member(acme.organization, Role.ANNOTATOR, email=e) for e in emails]
    for n, person in enumerate(people):
        # 4 to 3 on each item, the other way round on the next: agreement below chance
        data.judge(person, 0, 0 if n < 4 else 1)
        data.judge(person, 1, 1 if n < 4 else 0)
    with scope(organization=acme.organization):
        report = QCReport.objects.create(organization=acme.organization, project=data.project)
        assert run_report(report.pk).status == QCReport.Status.SUCCEEDED

    rows = download_csv(as_user(acme.lead), data.project)
    blank = rows.index([])
    header, people_rows = rows[0], rows[1:blank]
    assert rows[blank + 1] == ["question", "statistic", "value"]
    agreement_rows = rows[blank + 2 :]

    # Text cells: each hostile one with its apostrophe, the plain one as it is.
    column = header.index("annotator")
    assert sorted(row[column] for row in people_rows) == sorted(
        ["'" + email for email in HOSTILE.values()] + [PLAIN]
    )
    assert {row[0] for row in agreement_rows} == {"preference", "'" + HOSTILE_QUESTION}
    # Numbers are written as numbers: a negative statistic keeps its sign, no apostrophe.
    fleiss = {(row[0], row[1]): row[2] for row in agreement_rows}[("preference", "fleiss_kappa")]
    assert fleiss.startswith("-") and float(fleiss) < 0
    for row in people_rows:
        for name, cell in zip(header, row, strict=True):
            if name != "annotator" and cell not in ("", "True", "False"):
                float(cell)  # a number, never text with an apostrophe
