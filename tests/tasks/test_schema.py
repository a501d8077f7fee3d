import pytest
from django.core.exceptions import ValidationError
from django_scopes import scope

from tasks.schema import QuestionSchemaError, default_questions, validate_questions
from tests.factories import ProjectFactory

PREFERENCE = {
    "name": "preference",
    "kind": "preference",
    "labels": [
        {"text": "A is better", "means": "A", "key": "a", "tooltip": "A wins"},
        {"text": "B is better", "means": "B", "key": "b"},
        {"text": "Tie", "means": "tie", "key": "t"},
    ],
}


def errors_of(questions, mode="pairwise") -> list[str]:
    with pytest.raises(QuestionSchemaError) as info:
        validate_questions(questions, mode=mode)
    return info.value.errors_list


def test_a_complete_schema_is_normalized():
    questions = validate_questions(
        [
            PREFERENCE,
            {
                "name": "dimension",
                "kind": "choice",
                "options": ["Helpful", {"value": "Honest", "key": "2"}],
            },
            {"name": "flags", "kind": "multichoice", "options": ["verbose"]},
            {
                "name": "accuracy",
                "kind": "rating",
                "scale": {"min": 1, "max": 5, "labels": {"1": "wrong", "5": "exact"}},
            },
            {"name": "reasoning", "kind": "text", "required": True, "min_length": 20},
            {"name": "fix", "kind": "correction"},
        ]
    )
    preference, dimension, flags, accuracy, reasoning, fix = questions
    assert [label["means"] for label in preference["labels"]] == ["A", "B", "tie"]
    assert preference["labels"][0]["tooltip"] == "A wins"
    assert dimension["options"][0] == {
        "value": "Helpful",
        "text": "Helpful",
        "tooltip": "",
        "key": None,
    }
    assert accuracy["scale"] == {"min": 1, "max": 5, "labels": {"1": "wrong", "5": "exact"}}
    assert reasoning["required"] and reasoning["min_length"] == 20
    assert fix["kind"] == "correction"


def test_duplicate_shortcut_names_both_questions():
    errors = errors_of(
        [
            PREFERENCE,
            {
                "name": "dimension",
                "kind": "choice",
                "options": [{"value": "Helpful", "key": "a"}, "Honest"],
            },
        ]
    )
    assert errors == [
        "questions[1] 'dimension' options[0]: key 'a' is already the shortcut of "
        "preference → 'A is better'"
    ]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ({"name": "q", "kind": "slider"}, "questions[1] 'q': kind 'slider' is not one of"),
        (
            {"name": "q", "kind": "choice", "options": ["only"]},
            "questions[1] 'q': 'options' must list at least 2",
        ),
        (
            {"name": "q", "kind": "rating", "scale": {"min": 5, "max": 1}},
            "questions[1] 'q': 'scale' needs integers min < max",
        ),
        (
            {"name": "q", "kind": "text", "min_length": 10, "max_length": 5},
            "questions[1] 'q': 'min_length' is larger than 'max_length'",
        ),
        ({"name": "bad name!", "kind": "text"}, "questions[1]: 'name' must be a short identifier"),
        (
            {"name": "preference", "kind": "text"},
            "questions[1]: name 'preference' is used by another question",
        ),
    ],
)
def test_bad_question_is_named_with_its_field(question, expected):
    errors = errors_of([PREFERENCE, question])
    assert any(error.startswith(expected) for error in errors), errors


def test_pairwise_labels_need_a_and_b():
    errors = errors_of(
        [
            {
                "name": "p",
                "kind": "preference",
                "labels": [{"text": "A", "means": "A"}, {"text": "Tie", "means": "tie"}],
            }
        ]
    )
    assert errors == ["questions[0] 'p': labels must include one meaning 'A' and one meaning 'B'"]


def test_exactly_one_preference_question():
    assert errors_of([{"name": "r", "kind": "text"}]) == [
        "questions: need exactly one 'preference' question, found 0"
    ]


def test_best_worst_preference_takes_no_labels():
    assert (
        validate_questions([{"name": "p", "kind": "preference"}], mode="best_worst")[0]["labels"]
        == []
    )
    errors = errors_of([PREFERENCE], mode="ranking")
    assert errors[0].startswith("questions[0] 'preference': 'labels' are for pairwise projects")


@pytest.mark.parametrize("mode", ["pairwise", "best_worst", "ranking"])
def test_default_questions_are_valid(mode):
    assert validate_questions(default_questions(mode), mode=mode)


@pytest.mark.django_db
def test_project_validates_its_schema_on_save(acme):
    project = ProjectFactory.build(
        organization=acme.organization, name="New", questions=[{"name": "p", "kind": "preference"}]
    )
    with scope(organization=acme.organization), pytest.raises(ValidationError) as info:
        project.full_clean()
    assert "questions[0] 'p': 'labels' must list at least the two choices" in str(info.value)


@pytest.mark.django_db
def test_empty_schema_gets_the_default_for_the_mode(acme):
    project = ProjectFactory.build(
        organization=acme.organization, name="New", mode="ranking", questions=[]
    )
    with scope(organization=acme.organization):
        project.full_clean()
    assert [q["kind"] for q in project.questions] == ["preference", "text"]
