"""Graded preference in the question schema: labels with a strength from 1 to the
question's number of levels, and the template that asks for it."""

import pytest

from tasks.project_templates import DPO_GRADED, DPO_PAIRWISE, TEMPLATES
from tasks.schema import QuestionSchemaError, strength_levels, validate_questions


def preference(labels, **extra):
    return [{"name": "preference", "kind": "preference", "labels": labels, **extra}]


def graded(strength, **extra):
    return preference(
        [
            {"text": "A better", "means": "A", "strength": strength},
            {"text": "B better", "means": "B", "strength": 1},
        ],
        **extra,
    )


def errors(questions) -> list[str]:
    with pytest.raises(QuestionSchemaError) as info:
        validate_questions(questions)
    return info.value.errors_list


def test_the_graded_template_asks_for_three_levels_on_keys_1_to_7():
    question = DPO_GRADED.questions[0]
    assert TEMPLATES["dpo_graded"] is DPO_GRADED
    assert strength_levels(question) == 3
    assert [(lb["key"], lb["means"], lb["strength"]) for lb in question["labels"]] == [
        ("1", "A", 3),
        ("2", "A", 2),
        ("3", "A", 1),
        ("4", "tie", None),
        ("5", "B", 1),
        ("6", "B", 2),
        ("7", "B", 3),
        ("x", "both_bad", None),
    ]
    assert "| 7 | B much better |" in DPO_GRADED.guidelines


def test_a_project_without_strengths_does_not_ask_for_them():
    assert strength_levels(DPO_PAIRWISE.questions[0]) is None
    assert strength_levels(None) is None


def test_a_strength_beyond_the_levels_names_the_range():
    assert errors(graded(4)) == [
        "questions[0] 'preference' labels[0]: 'strength' must be a whole number from 1 to 3 "
        "(the question's 'strength_levels', at most 5), not 4"
    ]


def test_more_levels_when_the_question_asks_for_them():
    question = validate_questions(graded(5, strength_levels=5))[0]
    assert question["strength_levels"] == 5 and strength_levels(question) == 5
    assert question["labels"][0]["strength"] == 5
    assert errors(graded(3, strength_levels=2))[0].endswith(
        "from 1 to 2 (the question's 'strength_levels', at most 5), not 3"
    )


@pytest.mark.parametrize("levels", [0, 6, -1])
def test_levels_outside_one_to_five_are_refused(levels):
    assert errors(graded(1, strength_levels=levels)) == [
        f"questions[0] 'preference': 'strength_levels' must be from 1 to 5, not {levels}"
    ]


def test_levels_of_the_wrong_type_are_named():
    assert errors(graded(1, strength_levels="3")) == [
        "questions[0] 'preference': 'strength_levels' must be a whole number, not the text '3'"
    ]


def test_a_schema_without_levels_is_normalized_without_them():
    """Checking an older schema again changes nothing (and so bumps no schema version)."""
    question = validate_questions(graded(2))[0]
    assert "strength_levels" not in question
    assert validate_questions([question]) == [question]
