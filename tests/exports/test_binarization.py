"""The binarization studio: each rule on hand-made scores with the exact rows expected,
weighted aspects that change the winner, minimum margin, ties, k per prompt, the preview's
figures, bad options refused with nothing written, and the margin column as TRL reads it."""

import json
import os

import pytest
from django.core.management import CommandError, call_command
from django_scopes import scope, scopes_disabled

from annotation.models import Assignment, Judgment
from exports.models import Export
from exports.pairs import Options, extract
from exports.preview import preview
from exports.services import export_to_folder
from tasks.models import Candidate, Item, Role
from tasks.schema import default_questions, validate_questions
from tests.exports.test_api import bearer
from tests.factories import ProjectFactory, PromptFactory, member

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytestmark = pytest.mark.django_db

ASPECTS = ("helpfulness", "honesty", "overall")


class Board:
    """A project whose prompts have named candidates (their text is the name repeated to a
    given length); ``judge`` stores one judgment the way the workspace does."""

    def __init__(self, organization, mode="ranking", aspects=()):
        self.organization = organization
        questions = default_questions(mode) + [
            {"name": name, "kind": "rating", "scale": {"min": 1, "max": 5}} for name in aspects
        ]
        with scopes_disabled():
            self.project = ProjectFactory(
                organization=organization,
                mode=mode,
                questions=validate_questions(questions, mode=mode),
            )
        self.mode, self.ids, self.prompts, self.people = mode, {}, {}, {}

    def prompt(self, name: str, lengths: dict[str, int]) -> None:
        with scopes_disabled():
            prompt = PromptFactory(project=self.project, external_id=name)
            self.prompts[name] = prompt
            for cand, length in lengths.items():
                self.ids[cand] = Candidate.objects.create(
                    organization=self.organization,
                    prompt=prompt,
                    text=(cand * length)[:length],
                    content_hash=f"{name}-{cand}",
                ).pk

    def person(self, email: str):
        if email not in self.people:
            self.people[email] = member(self.organization, Role.ANNOTATOR, email=email)
        return self.people[email]

    def judge(self, email, prompt, shown, *, outcome="ranked", order=(), rubric=None, **more):
        """``shown``: candidate names in screen order; ``order``: best first (ranking), or
        (chosen, rejected) for pairwise / best-worst; ``rubric``: {name: {aspect: score}}."""
        ids = [self.ids[c] for c in shown]
        key = "-".join(str(i) for i in sorted(ids))
        with scopes_disabled():
            item, _ = Item.objects.get_or_create(
                organization=self.organization,
                project=self.project,
                prompt=self.prompts[prompt],
                candidate_key=key,
                defaults={"mode": self.mode},
            )
            person = self.person(email)
            assignment = Assignment.objects.create(
                organization=self.organization,
                project=self.project,
                item=item,
                annotator=person,
                status="submitted",
                display_order=ids,
                expires_at="2030-01-01T00:00:00Z",
            )
            named = [self.ids[c] for c in order]
            Judgment.objects.create(
                organization=self.organization,
                project=self.project,
                item=item,
                assignment=assignment,
                annotator=person,
                outcome=outcome,
                chosen_id=named[0] if named else None,
                rejected_id=named[-1] if named else None,
                ranking=named if self.mode == "ranking" else [],
                rubric_scores={str(self.ids[c]): scores for c, scores in (rubric or {}).items()},
                **more,
            )

    def name(self, pk: int) -> str:
        return next(name for name, value in self.ids.items() if value == pk)

    def rows(self, **options) -> list[tuple]:
        """(prompt, chosen, rejected, margin, score chosen, score rejected) in export order."""
        return [
            (
                p.prompt.external_id,
                self.name(p.chosen.pk),
                self.name(p.rejected.pk),
                p.scored.margin,
                p.scored.score_chosen,
                p.scored.score_rejected,
            )
            for p in self.pairs(**options)
        ]

    def pairs(self, **options):
        with scope(organization=self.organization):
            return list(extract(self.project, Options(ratios=(1.0,), **options)))


@pytest.fixture
def ranked(acme):
    """Prompt p0: one ranking c > a > d > b (scores 1, ⅔, ⅓, 0), candidates of 10, 4, 20,
    7 characters (a, b, c, d) shown a, b, c, d. Prompt p1: x > y, shown y then x. Prompt
    p2: two annotators rank u, v in opposite orders (a tie, ½ each)."""
    board = Board(acme.organization)
    board.prompt("p0", {"a": 10, "b": 4, "c": 20, "d": 7})
    board.prompt("p1", {"x": 5, "y": 9})
    board.prompt("p2", {"u": 3, "v": 3})
    board.judge("r1@x.org", "p0", "abcd", order="cadb")
    board.judge("r1@x.org", "p1", "yx", order="xy")
    board.judge("r1@x.org", "p2", "uv", order="uv")
    board.judge("r2@x.org", "p2", "uv", order="vu")
    return board


def only(rows, prompt):
    return [row[1:] for row in rows if row[0] == prompt]


def test_best_vs_others(ranked):
    assert only(ranked.rows(binarize="best_vs_others"), "p0") == [
        ("c", "a", 0.3333, 1.0, 0.6667),
        ("c", "d", 0.6667, 1.0, 0.3333),
        ("c", "b", 1.0, 1.0, 0.0),
    ]
    assert only(ranked.rows(binarize="best_vs_others"), "p1") == [("x", "y", 1.0, 1.0, 0.0)]
    # the tie of p2 makes no pair
    assert only(ranked.rows(binarize="best_vs_others"), "p2") == []


def test_best_vs_worst(ranked):
    assert only(ranked.rows(binarize="best_vs_worst"), "p0") == [("c", "b", 1.0, 1.0, 0.0)]


def test_all_ordered_pairs(ranked):
    assert only(ranked.rows(binarize="all_pairs"), "p0") == [
        ("c", "a", 0.3333, 1.0, 0.6667),
        ("c", "d", 0.6667, 1.0, 0.3333),
        ("c", "b", 1.0, 1.0, 0.0),
        ("a", "d", 0.3333, 0.6667, 0.3333),
        ("a", "b", 0.6667, 0.6667, 0.0),
        ("d", "b", 0.3333, 0.3333, 0.0),
    ]


def test_best_vs_a_random_lower_one_is_fixed_by_the_seed(ranked):
    draws = set()
    for seed in range(12):
        [pair] = only(ranked.rows(binarize="best_vs_random", seed=seed), "p0")
        assert pair == only(ranked.rows(binarize="best_vs_random", seed=seed), "p0")[0]
        assert pair[0] == "c" and pair[1] in "adb"
        draws.add(pair[1])
    assert len(draws) > 1  # the seed draws, not a fixed choice
    # with a minimum margin only the lower ones far enough below can be drawn
    for seed in range(6):
        [pair] = only(ranked.rows(binarize="best_vs_random", seed=seed, min_margin=0.9), "p0")
        assert pair[:2] == ("c", "b")


def test_minimum_margin_and_ties(ranked):
    assert only(ranked.rows(binarize="best_vs_others", min_margin=0.5), "p0") == [
        ("c", "d", 0.6667, 1.0, 0.3333),
        ("c", "b", 1.0, 1.0, 0.0),
    ]
    # kept ties: one pair of margin 0, its side decided by the seed, the same every time
    [tie] = only(ranked.rows(binarize="best_vs_others", keep_ties=True, seed=5), "p2")
    assert tie[2:] == (0.0, 0.5, 0.5) and {tie[0], tie[1]} == {"u", "v"}
    assert only(ranked.rows(binarize="best_vs_others", keep_ties=True, seed=5), "p2") == [tie]
    # a minimum margin above 0 leaves ties out even when kept
    assert only(ranked.rows(binarize="all_pairs", keep_ties=True, min_margin=0.1), "p2") == []


def test_at_most_k_pairs_per_prompt_take_the_largest_margins_in_the_seeds_order(ranked):
    seconds = set()
    for seed in range(16):
        kept = only(ranked.rows(binarize="all_pairs", max_pairs_per_prompt=2, seed=seed), "p0")
        again = only(ranked.rows(binarize="all_pairs", max_pairs_per_prompt=2, seed=seed), "p0")
        assert kept == again and len(kept) == 2
        assert kept[0] == ("c", "b", 1.0, 1.0, 0.0)
        assert kept[1] in [("c", "d", 0.6667, 1.0, 0.3333), ("a", "b", 0.6667, 0.6667, 0.0)]
        seconds.add(kept[1][:2])
    assert seconds == {("c", "d"), ("a", "b")}  # equal margins: the seed decides


def test_order_scores_from_best_worst_and_pairwise_wins(acme):
    best_worst = Board(acme.organization, mode="best_worst")
    best_worst.prompt("q", {"a": 1, "b": 1, "c": 1})
    best_worst.judge("w@x.org", "q", "abc", order="ca")  # best c, worst a; b in the middle
    assert best_worst.rows(binarize="all_pairs") == [
        ("q", "c", "b", 0.5, 1.0, 0.5),
        ("q", "c", "a", 1.0, 1.0, 0.0),
        ("q", "b", "a", 0.5, 0.5, 0.0),
    ]
    pairwise = Board(acme.organization, mode="pairwise")
    pairwise.prompt("q", {"a": 1, "b": 1, "c": 1})
    pairwise.judge("r@x.org", "q", "ab", outcome="preferred", order="ab")
    pairwise.judge("r@x.org", "q", "bc", outcome="preferred", order="bc")
    pairwise.judge("s@x.org", "q", "bc", outcome="tie")
    # a: 1 of 1; b: lost to a, beat c, tied c: 1.5 of 3; c: 0.5 of 2
    assert pairwise.rows(binarize="best_vs_others") == [
        ("q", "a", "b", 0.5, 1.0, 0.5),
        ("q", "a", "c", 0.75, 1.0, 0.25),
    ]
    [first, second] = pairwise.pairs(binarize="best_vs_others")
    # a and b met once, a above: agreement 1; a and c were never shown together: no
    # agreement, and the pair rests on the three judgments that saw one of them
    assert (first.agreement, first.votes) == (1.0, 1)
    assert (second.agreement, second.votes) == (0.0, 3)


@pytest.fixture
def rated(acme):
    """UltraFeedback's lesson: A is better on helpfulness and honesty, B has the higher
    overall score."""
    board = Board(acme.organization, mode="pairwise", aspects=ASPECTS)
    board.prompt("q", {"A": 6, "B": 3})
    board.judge(
        "r@x.org",
        "q",
        "AB",
        outcome="preferred",
        order="BA",
        rubric={
            "A": {"helpfulness": 5, "honesty": 5, "overall": 2},
            "B": {"helpfulness": 2, "honesty": 3, "overall": 4},
        },
    )
    return board


def test_weighted_aspects_flip_the_winner_of_a_single_overall_score(rated):
    rule = {"binarize": "best_vs_others", "scores_from": "aspects"}
    assert rated.rows(**rule, aspect_weights="overall=1") == [("q", "B", "A", 2.0, 4.0, 2.0)]
    assert rated.rows(**rule) == [("q", "A", "B", 1.0, 4.0, 3.0)]  # equal weights
    assert rated.rows(**rule, aspect_weights="helpfulness=1, honesty=1") == [
        ("q", "A", "B", 2.5, 5.0, 2.5)
    ]
    [pair] = rated.pairs(**rule, aspect_weights="helpfulness=3,overall=1")  # 4.25 vs 2.5
    assert (pair.scored.margin, pair.scored.score_chosen) == (1.75, 4.25)
    assert pair.scored.aspects_chosen == {"helpfulness": 5.0, "honesty": 5.0, "overall": 2.0}


def test_score_columns_in_trl_csv_parquet_and_kto(rated, tmp_path):
    rule = Options(
        binarize="best_vs_others", scores_from="aspects", aspect_weights="overall=1", ratios=(1,)
    )
    with scope(organization=rated.organization):
        manifest = export_to_folder(rated.project, "trl", tmp_path / "trl", rule)
        export_to_folder(rated.project, "csv", tmp_path / "csv", rule)
        export_to_folder(rated.project, "kto", tmp_path / "kto", rule)
    [record] = [json.loads(x) for x in (tmp_path / "trl" / "train.jsonl").read_text().splitlines()]
    assert record == {
        "prompt": rated.prompts["q"].text,
        "chosen": "BBB",
        "rejected": "AAAAAA",
        "margin": 2.0,
        "score_chosen": 4.0,
        "score_rejected": 2.0,
        "score_chosen_helpfulness": 2.0,
        "score_chosen_honesty": 3.0,
        "score_chosen_overall": 4.0,
        "score_rejected_helpfulness": 5.0,
        "score_rejected_honesty": 5.0,
        "score_rejected_overall": 2.0,
    }
    header = (tmp_path / "csv" / "train.csv").read_text().splitlines()[0].split(",")
    assert header[9:12] == ["margin", "score_chosen", "score_rejected"]
    kto = [json.loads(x) for x in (tmp_path / "kto" / "train.jsonl").read_text().splitlines()]
    assert sorted((r["completion"], r["label"], r["score"]) for r in kto) == [
        ("AAAAAA", False, 2.0),
        ("BBB", True, 4.0),
    ]
    provenance = json.loads((tmp_path / "trl" / "train.provenance.jsonl").read_text())
    assert (provenance["margin"], provenance["margin_from"]) == (2.0, "scores")
    card = (tmp_path / "trl" / "README.md").read_text()
    assert "Rule: `best_vs_others`" in card and "weights overall=1" in card
    assert "| prompts kept | 1 of 1 (1.0) |" in card
    assert manifest["options"]["aspect_weights"] == "overall=1"


def test_a_pairwise_pair_takes_the_mean_strength_of_its_judgments(acme):
    board = Board(acme.organization, mode="pairwise")
    board.prompt("q", {"a": 1, "b": 1})
    board.judge("r@x.org", "q", "ab", outcome="preferred", order="ab", strength=3)
    board.judge("s@x.org", "q", "ba", outcome="preferred", order="ab", strength=1)
    board.judge("t@x.org", "q", "ab", outcome="preferred", order="ab")  # no strength
    [pair] = board.pairs(score_columns=True, policy="unanimous")
    assert (pair.scored.margin, pair.scored.margin_from) == (2.0, "strength")


def test_default_exports_have_no_score_columns_and_unchanged_options(ranked, tmp_path):
    with scope(organization=ranked.organization):
        manifest = export_to_folder(
            ranked.project, "trl", tmp_path / "plain", Options(policy="all", ratios=(1.0,))
        )
    assert "binarize" not in manifest["options"] and "preview" not in manifest
    line = json.loads((tmp_path / "plain" / "train.jsonl").read_text().splitlines()[0])
    assert set(line) == {"prompt", "chosen", "rejected"}


def test_the_preview_gives_exact_figures_and_writes_nothing(ranked, tmp_path):
    options = Options(binarize="best_vs_others", min_margin=0.5, ratios=(1.0,))
    with scope(organization=ranked.organization):
        figures = preview(ranked.project, options)
    # p0: c>d (20−7) and c>b (20−4), p1: x>y (5−9); p2 is a tie and keeps nothing
    assert figures == {
        "pairs": 3,
        "splits": {"train": 3},
        "prompts": 3,
        "prompts_kept": 2,
        "prompts_kept_share": 0.6667,
        "length_difference": {"mean": 8.33, "median": 13.0},
        # shown a, b, c, d: c before d, not before b; shown y, x: x second
        "chosen_shown_first": 0.3333,
        "pairs_with_display": 3,
    }
    with scopes_disabled():
        assert Export.objects.count() == 0
    ref = f"{ranked.organization.slug}/{ranked.project.pk}"
    call_command(
        "export_dataset", ref, "--format", "trl", "--preview", "--binarize", "best_vs_others",
        "--min-margin", "0.5", "--split", "1", "--out", str(tmp_path / "never"),
    )  # fmt: skip
    assert not (tmp_path / "never").exists()


def test_the_command_prints_the_preview(ranked, capsys):
    ref = f"{ranked.organization.slug}/{ranked.project.pk}"
    call_command("export_dataset", ref, "--format", "trl", "--preview", "--binarize", "all_pairs")
    printed = json.loads(capsys.readouterr().out)
    assert printed["pairs"] == 7 and printed["prompts_kept"] == 2


def test_bad_options_are_refused_and_nothing_is_written(rated, tmp_path, client):
    assert Options(min_margin=1).problems() == ["min_margin need(s) a binarization rule (binarize)"]
    assert Options(binarize="best_of_all").problems()[0].startswith("binarize must be one of")
    assert Options(
        binarize="all_pairs", scores_from="aspects", aspect_weights="overall=x"
    ).problems() == ['aspect weight "overall=x" must be aspect=number']
    unknown = Options(binarize="all_pairs", scores_from="aspects", aspect_weights="tone=1")
    with scope(organization=rated.organization), pytest.raises(ValueError, match="unknown aspect"):
        export_to_folder(rated.project, "trl", tmp_path / "out" / "x", unknown)
    assert not (tmp_path / "out").exists()
    ref = f"{rated.organization.slug}/{rated.project.pk}"
    with pytest.raises(CommandError, match="the project's rubric has helpfulness"):
        call_command(
            "export_dataset", ref, "--format", "trl", "--out", str(tmp_path / "cmd"),
            "--binarize", "all_pairs", "--scores-from", "aspects", "--aspect-weights", "tone=1",
        )  # fmt: skip
    assert not (tmp_path / "cmd").exists()
    url = f"/api/v1/projects/{rated.project.pk}/exports"
    headers = bearer(rated.organization)
    body = {"format": "trl", "options": {"binarize": "all_pairs", "scores_from": "aspects",
                                          "aspect_weights": "tone=1"}}  # fmt: skip
    for query in ("", "?preview=1"):
        answer = client.post(url + query, body, content_type="application/json", **headers)
        assert answer.status_code == 400 and "unknown aspect" in answer.content.decode()
    with scopes_disabled():
        assert Export.objects.count() == 0


def test_the_api_previews_without_an_export(rated, client):
    url = f"/api/v1/projects/{rated.project.pk}/exports?preview=1"
    body = {"format": "trl", "options": {"binarize": "best_vs_worst", "scores_from": "aspects"}}
    answer = client.post(url, body, content_type="application/json", **bearer(rated.organization))
    assert answer.status_code == 200, answer.content
    figures = answer.json()
    assert (figures["pairs"], figures["prompts_kept_share"]) == (1, 1.0)
    assert figures["length_difference"] == {"mean": 3.0, "median": 3.0}  # AAAAAA − BBB
    with scopes_disabled():
        assert Export.objects.count() == 0


def test_the_margin_column_loads_with_datasets_and_passes_trls_helpers(ranked, tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    from tests.exports.test_formats import tokenizer

    options = Options(binarize="all_pairs", ratios=(1.0,), min_margin=0.5)
    with scope(organization=ranked.organization):
        export_to_folder(ranked.project, "trl", tmp_path / "std", options)
        export_to_folder(ranked.project, "trl-conversational", tmp_path / "conv", options)
        export_to_folder(ranked.project, "parquet", tmp_path / "pq", options)
    for kind, path in (
        ("json", tmp_path / "std" / "train.jsonl"),
        ("json", tmp_path / "conv" / "train.jsonl"),
        ("parquet", tmp_path / "pq" / "train.parquet"),
    ):
        rows = load_dataset(
            kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf")
        )
        # TRL's reward collator stacks example["margin"] into a float tensor: a number
        # in every row
        assert rows.features["margin"].dtype == "float64"
        assert sorted(rows["margin"]) == [0.6667, 0.6667, 1.0, 1.0]
        assert None not in rows["score_chosen"]
        applied = rows.map(maybe_apply_chat_template, fn_kwargs={"processing_class": tokenizer()})
        assert applied["margin"] == rows["margin"]  # the helpers keep the column
        assert is_conversational(rows[0]) == (path.parent.name == "conv")
