"""Potato's pairwise slider (``mode: scale``, -N..+N) imports as graded preference.

Potato's documentation (docs/annotation-types/comparison/pairwise_annotation.md, "Scale
Mode"): ``scale.min: -3  # Negative = prefer left item (A)``, ``scale.max: 3  # Positive =
prefer right item (B)``, and its output is the slider's value (``"scale_value": "-2"``)."""

import pytest
from django_scopes import scopes_disabled

from annotation.models import Assignment
from annotation.services import submit_judgment
from annotation.strength import judgment_signed_strength
from tasks.importers.potato import PotatoImportFailed, parse_config
from tasks.models import Item
from tasks.schema import strength_levels
from tests.tasks.test_potato_import import import_dir

SCALE_CONFIG = """\
annotation_task_name: Graded replies
data_files: [data.jsonl]
item_properties: {id_key: id, text_key: responses, context_key: question}
annotation_schemes:
  - annotation_type: pairwise
    name: preference_scale
    description: Rate how much better A is than B
    mode: scale
    items_key: responses
    labels: [Response A, Response B]
    scale:
      min: -3
      max: 3
      step: 1
      default: 0
      labels: {min: A is much better, max: B is much better, center: Equal}
    label_requirement: {required: true}
"""


def labels_of(config) -> list[tuple]:
    question = config.questions[0]
    return [
        (lb["value"], lb["text"], lb["means"], lb["strength"], lb["key"])
        for lb in question["labels"]
    ]


def test_a_minus_three_to_three_slider_becomes_seven_graded_labels():
    config = parse_config(SCALE_CONFIG)
    assert labels_of(config) == [
        ("-3", "A is much better", "A", 3, "1"),
        ("-2", "Response A better", "A", 2, "2"),
        ("-1", "Response A slightly better", "A", 1, "3"),
        ("0", "Equal", "tie", None, "4"),
        ("1", "Response B slightly better", "B", 1, "5"),
        ("2", "Response B better", "B", 2, "6"),
        ("3", "B is much better", "B", 3, "7"),
    ]
    assert strength_levels(config.questions[0]) == 3
    assert any("scale.default" in w for w in config.warnings)


def test_a_five_point_slider_keeps_five_levels_without_keys():
    config = parse_config(SCALE_CONFIG.replace("min: -3", "min: -5").replace("max: 3", "max: 5"))
    question = config.questions[0]
    assert question["strength_levels"] == 5
    assert [lb["value"] for lb in question["labels"]] == [str(v) for v in range(-5, 6)]
    assert question["labels"][1]["text"] == "Response A better (4 of 5)"
    assert {lb["key"] for lb in question["labels"]} == {None}  # eleven points: no 1..9 keys


@pytest.mark.parametrize(
    ("scale", "shown"),
    [
        ("{min: -3, max: 2}", "min -3, max 2, step 1"),
        ("{min: 1, max: 7}", "min 1, max 7, step 1"),
        ("{min: -6, max: 6}", "min -6, max 6, step 1"),
        ("{min: -3, max: 3, step: 0.5}", "min -3, max 3, step 0.5"),
    ],
)
def test_a_scale_that_is_not_minus_n_to_n_is_refused_with_its_line(scale, shown):
    text = SCALE_CONFIG.split("    scale:")[0] + f"    scale: {scale}\n"
    with pytest.raises(PotatoImportFailed) as info:
        parse_config(text)
    assert [str(p) for p in info.value.problems] == [
        "config.yaml, line 11, key 'annotation_schemes[0].scale': a graded comparison needs "
        "a whole-number scale from -N to N in steps of 1, N at most 5 (like min: -3, "
        f"max: 3), not {shown}"
    ]


@pytest.mark.django_db
def test_imported_slider_project_stores_signed_strengths(acme, tmp_path):
    """The imported project is graded end to end: the annotator's "-2" (A better on their
    screen) is stored with strength 2 and signed by the item's order."""
    (tmp_path / "config.yaml").write_text(SCALE_CONFIG)
    (tmp_path / "data.jsonl").write_text(
        '{"id": "1", "question": "Which reply is kinder?", "responses": ["Thanks!", "Whatever."]}\n'
    )
    project, _, report, _ = import_dir(acme.organization, tmp_path)
    assert report.items_created == 1
    with scopes_disabled():
        item = Item.objects.get(project=project)
        first, second = sorted(item.candidates.values_list("pk", flat=True))
        signed = []
        for order in ([first, second], [second, first]):
            assignment = Assignment.objects.create(
                organization=acme.organization,
                project=project,
                item=item,
                annotator=acme.annotator if order[0] == first else acme.lead,
                display_order=order,
                expires_at="2030-01-01T00:00:00Z",
            )
            judgment = submit_judgment(
                project=project,
                assignment_id=assignment.pk,
                annotator=assignment.annotator,
                answers={"preference_scale": "-2"},
            )
            assert (judgment.strength, judgment.label) == (2, "Response A better")
            signed.append(judgment_signed_strength(judgment))
    assert signed == [2, -2]
