"""Pair extraction, aggregation, filters, splits and files, on small hand-built data with
the exact rows expected."""

import csv
import hashlib
import json

import pytest
from django.core.management import CommandError, call_command
from django_scopes import scope, scopes_disabled

from annotation.allocator import next_assignment
from annotation.models import Adjudication, Judgment
from annotation.services import submit_judgment
from exports.pairs import Options, extract
from exports.services import export_to_folder
from tasks.models import Candidate, Role
from tests.factories import ProjectFactory, member
from tests.qc.test_report import Data
from tests.tasks.test_prompt_import import jsonl, row, run

pytestmark = pytest.mark.django_db


def everything(project, **options):
    with scope(organization=project.organization):
        return list(extract(project, Options(**options)))


def pairs(project, **options):
    """The pairs (both-bad completions, which only the unpaired format takes, left out)."""
    return [p for p in everything(project, **options) if p.chosen is not None]


def rows(data, found) -> list[tuple]:
    """(item number, chosen side, rejected side, agreement) with sides 0/1 of the item."""
    number = {item.pk: n for n, (item, _) in enumerate(data.items)}
    side = {c.pk: i for _, pair in data.items for i, c in enumerate(pair)}
    return sorted(
        (number[p.item_id], side[p.chosen.pk], side[p.rejected.pk], p.agreement) for p in found
    )


@pytest.fixture
def voted(acme):
    """Item 0: all three pick the first; item 1: first, second, second; item 2: second and
    two ties; item 3: both bad twice."""
    data = Data(acme.organization, 4, overlap=3)
    a, b, c = (member(acme.organization, Role.ANNOTATOR, email=f"{x}@x.org") for x in "abc")
    for person in (a, b, c):
        data.judge(person, 0, 0)
    data.judge(a, 1, 0)
    data.judge(b, 1, 1, swapped=True)
    data.judge(c, 1, 1)
    data.judge(a, 2, 1)
    data.judge(b, 2, None)
    data.judge(c, 2, None)
    data.judge(a, 3, None)
    data.judge(b, 3, None)
    with scopes_disabled():
        Judgment.objects.filter(item=data.items[3][0]).update(outcome="both_bad", label="Both bad")
    data.people = (a, b, c)
    return data


def test_each_aggregation_policy_gives_its_rows(voted):
    project = voted.project
    assert rows(voted, pairs(project, policy="unanimous")) == [(0, 0, 1, 1.0)]
    assert rows(voted, pairs(project, policy="majority")) == [(0, 0, 1, 1.0), (1, 1, 0, 0.6667)]
    assert rows(voted, pairs(project, policy="majority", min_agreement=0.7)) == [(0, 0, 1, 1.0)]
    assert rows(voted, pairs(project, policy="all")) == [
        (0, 0, 1, 1.0),
        (0, 0, 1, 1.0),
        (0, 0, 1, 1.0),
        (1, 0, 1, 0.3333),
        (1, 1, 0, 0.6667),
        (1, 1, 0, 0.6667),
        (2, 1, 0, 0.3333),
    ]
    # adjudicated without any decision: the unanimous items
    assert rows(voted, pairs(project, policy="adjudicated")) == [(0, 0, 1, 1.0)]


def test_both_bad_items_give_undesirable_completions(voted):
    item, pair = voted.items[3]
    for policy in ("unanimous", "majority", "adjudicated"):
        bad = [p for p in everything(voted.project, policy=policy) if p.chosen is None]
        assert sorted(p.rejected.pk for p in bad) == [pair[0].pk, pair[1].pk], policy
        assert {(p.item_id, p.agreement) for p in bad} == {(item.pk, 1.0)}
    bad = [p for p in everything(voted.project, policy="all") if p.chosen is None]
    assert len(bad) == 4  # two judgments x two candidates


def test_a_leads_decision_wins(voted, acme):
    item, pair = voted.items[1]
    with scopes_disabled():
        Adjudication.objects.create(
            organization=acme.organization,
            project=voted.project,
            item=item,
            outcome="preferred",
            chosen=pair[0],
            rejected=pair[1],
            note="the first is right",
        )
    found = pairs(voted.project, policy="adjudicated")
    assert rows(voted, found) == [(0, 0, 1, 1.0), (1, 0, 1, 1.0)]
    decided = next(p for p in found if p.item_id == item.pk)
    assert decided.adjudicated and decided.annotators == ["a@x.org"]  # who agreed with it


def test_provenance_of_a_pair(voted):
    [pair] = pairs(voted.project, policy="unanimous")
    assert pair.annotators == ["a@x.org", "b@x.org", "c@x.org"]
    assert (pair.votes, pair.judgments, pair.answers) == (3, 3, {"dimension": "helpful"})
    assert pair.prompt.external_id == "p0" and pair.chosen.text == "first answer to prompt 0"


def test_filters(voted, acme):
    project = voted.project
    with scopes_disabled():
        first, second = voted.items[0][1]
        Candidate.objects.filter(pk=second.pk).update(finish_reason="length")
    assert pairs(project, policy="unanimous", exclude_truncated=True) == []
    assert pairs(project, policy="unanimous", dimension="dimension=honest") == []
    assert len(pairs(project, policy="unanimous", dimension="dimension=helpful")) == 1
    assert pairs(project, policy="unanimous", sources=("generated",)) == []
    assert len(pairs(project, policy="unanimous", sources=("imported",))) == 1
    # "first answer to prompt 0" vs "second answer to prompt 0": 2 of 4 trigrams shared (0.5)
    assert pairs(project, policy="unanimous", near_identical=0.3) == []
    assert len(pairs(project, policy="unanimous", near_identical=0.9)) == 1
    # item 1 says first > second once and second > first twice: contradictory
    assert rows(voted, pairs(project, policy="majority", exclude_contradictory=True)) == [
        (0, 0, 1, 1.0)
    ]


def best_worst_and_ranking(acme, mode, answers):
    project = ProjectFactory(organization=acme.organization, mode=mode, name=mode)
    run(project, {"d.jsonl": jsonl(row(1, response_c="A third answer."))})
    with scope(organization=acme.organization):
        assignment = next_assignment(project=project, annotator=acme.annotator).assignment
        submit_judgment(
            project=project,
            assignment_id=assignment.pk,
            annotator=acme.annotator,
            answers=answers,
        )
    return project, assignment.display_order


def test_best_worst_rules(acme):
    project, order = best_worst_and_ranking(
        acme, "best_worst", {"preference": {"best": "3", "worst": "1"}}
    )
    found = [(p.chosen.pk, p.rejected.pk) for p in pairs(project, policy="all")]
    assert found == [(order[2], order[0])]
    found = [(p.chosen.pk, p.rejected.pk) for p in pairs(project, policy="all", best_vs_all=True)]
    assert sorted(found) == sorted([(order[2], order[0]), (order[2], order[1])])


def test_ranking_rules(acme):
    project, order = best_worst_and_ranking(acme, "ranking", {"preference": ["3", "1", "2"]})
    best, middle, last = order[2], order[0], order[1]
    found = [(p.chosen.pk, p.rejected.pk) for p in pairs(project, policy="all")]
    assert found == [(best, middle), (best, last)]
    found = [
        (p.chosen.pk, p.rejected.pk) for p in pairs(project, policy="all", ranking_pairs="all")
    ]
    assert found == [(best, middle), (best, last), (middle, last)]


def test_rubric_margin_adds_pairs(voted):
    item, pair = voted.items[2]
    with scopes_disabled():
        Judgment.objects.filter(item=item).update(
            rubric_scores={
                str(pair[0].pk): {"accuracy": 5, "tone": 4},
                str(pair[1].pk): {"accuracy": 2, "tone": 3},
            }
        )
    # totals 9 vs 5: with a margin of 3 every judgment of item 2 also says first > second
    assert (2, 0, 1, 1.0) in rows(voted, pairs(voted.project, policy="unanimous", rubric_margin=3))
    assert (2, 0, 1, 1.0) not in rows(
        voted, pairs(voted.project, policy="unanimous", rubric_margin=5)
    )


def test_splits_keep_prompts_apart_follow_the_ratios_and_the_seed(acme):
    data = Data(acme.organization, 20, overlap=1)
    person = member(acme.organization)
    for n in range(20):
        data.judge(person, n, n % 2)
    found = pairs(data.project, policy="all", ratios=(0.8, 0.2), seed=1)
    by_split = {}
    for p in found:
        by_split.setdefault(p.split, set()).add(p.prompt.pk)
    assert {k: len(v) for k, v in by_split.items()} == {"train": 16, "validation": 4}
    assert not by_split["train"] & by_split["validation"]
    again = pairs(data.project, policy="all", ratios=(0.8, 0.2), seed=1)
    assert [(p.split, p.prompt.pk) for p in again] == [(p.split, p.prompt.pk) for p in found]
    other = pairs(data.project, policy="all", ratios=(0.8, 0.2), seed=2)
    assert {p.prompt.pk for p in other if p.split == "validation"} != by_split["validation"]
    three = pairs(data.project, policy="all", ratios=(0.7, 0.15, 0.15), seed=1)
    counts = {
        s: len({p.prompt.pk for p in three if p.split == s})
        for s in ("train", "validation", "test")
    }
    assert counts == {"train": 14, "validation": 3, "test": 3}


def test_bad_options_are_refused():
    assert Options(ratios=(0.8, 0.3)).problems() == [
        "the split ratios must add up to 1 (they add up to 1.1)"
    ]
    assert "policy must be one of" in Options(policy="vote").problems()[0]


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_files_are_byte_identical_across_runs_and_checksummed(voted, tmp_path):
    manifests = []
    for name in ("one", "two"):
        with scope(organization=voted.project.organization):
            manifests.append(
                export_to_folder(
                    voted.project, "trl", tmp_path / name, Options(policy="all", seed=3)
                )
            )
    assert manifests[0]["files"] == manifests[1]["files"]
    for entry in manifests[0]["files"]:
        assert sha256(tmp_path / "one" / entry["name"]) == entry["sha256"]
        assert (tmp_path / "one" / entry["name"]).read_bytes() == (
            tmp_path / "two" / entry["name"]
        ).read_bytes()
    lines = [
        json.loads(line)
        for name in ("train.jsonl", "validation.jsonl")
        if (tmp_path / "one" / name).exists()
        for line in (tmp_path / "one" / name).read_text().splitlines()
    ]
    assert len(lines) == 7 and set(lines[0]) == {"prompt", "chosen", "rejected"}


def with_system_prompt(data, system: str) -> None:
    """Item 0's prompt becomes a conversation that starts with a system prompt."""
    with scopes_disabled():
        prompt = data.items[0][0].prompt
        prompt.messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": prompt.text},
        ]
        prompt.save()


def test_conversational_keeps_the_system_prompt_and_csv_has_the_documented_header(voted, tmp_path):
    with_system_prompt(voted, "You are terse.")
    with scopes_disabled():
        Judgment.objects.filter(item=voted.items[0][0]).update(reasoning="=HYPERLINK(x)")
    with scope(organization=voted.project.organization):
        export_to_folder(
            voted.project,
            "trl-conversational",
            tmp_path / "conv",
            Options(policy="unanimous", ratios=(1.0,)),
        )
        export_to_folder(
            voted.project,
            "csv",
            tmp_path / "csv",
            Options(policy="unanimous", ratios=(1.0,), conversation="transcript"),
        )
    [record] = [json.loads(x) for x in (tmp_path / "conv" / "train.jsonl").read_text().splitlines()]
    assert record["prompt"][0] == {"role": "system", "content": "You are terse."}
    assert record["chosen"] == [{"role": "assistant", "content": "first answer to prompt 0"}]
    with (tmp_path / "csv" / "train.csv").open(newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == [
        "prompt",
        "better_response",
        "weaker_response",
        "diagnosis",
        "scores",
        "dimension",
        "agreement",
        "source",
        "confidence",
    ]
    assert table[1][7:] == ["human", table[1][6]]
    assert table[1][1] == "first answer to prompt 0" and table[1][5] == "helpful"
    assert table[1][3].startswith("'=HYPERLINK")  # not a formula in a spreadsheet
    provenance = json.loads((tmp_path / "csv" / "train.provenance.jsonl").read_text())
    assert provenance["annotators"] == ["a@x.org", "b@x.org", "c@x.org"]
    assert provenance["chosen"]["source"] == "imported"


def test_export_dataset_command(voted, acme, tmp_path, capsys):
    out = tmp_path / "export"
    ref = f"{acme.organization.slug}/{voted.project.pk}"
    call_command("export_dataset", ref, "--format", "trl", "--out", str(out), "--policy", "all")
    printed = capsys.readouterr().out
    assert "sha256" in printed and (out / "manifest.json").exists()
    with pytest.raises(CommandError, match="not empty"):
        call_command("export_dataset", ref, "--format", "trl", "--out", str(out))
    with pytest.raises(CommandError, match="add up to 1"):
        call_command(
            "export_dataset",
            ref,
            "--format",
            "trl",
            "--out",
            str(tmp_path / "x"),
            "--split",
            "0.5",
            "0.2",
        )
    assert not (tmp_path / "x").exists()
