import copy
import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
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


# --- every field's type ----------------------------------------------------------------------
# A value of the wrong type (a lead typing "heavy" for a weight) is refused with the question
# and the field named, never a server error.

TEXTS = [5, 1.5, True, ["x"], {"x": 1}]
FLAGS = ["yes", "false", 1, 0, ["x"], {"x": 1}]
WHOLES = ["3", 2.5, True, ["x"], {"x": 1}]
NUMBERS = ["heavy", "1", True, False, ["x"], {"x": 1}, float("nan"), float("inf"), -1]
KEYS = [["a"], {"a": 1}, True, 1.5, 12]
LISTS = ["abc", 5, True, {"x": 1}]
OBJECTS = ["abc", 5, True, ["x"]]

# A valid question of each kind, named after it.
VALID = {
    "preference": PREFERENCE,
    "choice": {"name": "choice", "kind": "choice", "options": [{"value": "x"}, {"value": "y"}]},
    "multichoice": {"name": "multichoice", "kind": "multichoice", "options": [{"value": "x"}]},
    "rating": {"name": "rating", "kind": "rating", "scale": {"min": 1, "max": 5, "labels": {}}},
    "text": {"name": "text", "kind": "text"},
    "correction": {"name": "correction", "kind": "correction"},
}
# (kind, where the field is in the question, hostile values, what the error names)
FIELDS = [
    *[
        (kind, path, values, named)
        for kind in VALID
        for path, values, named in [
            (("description",), TEXTS, "'description'"),
            (("required",), FLAGS, "'required'"),
            (("kind",), [["text"], {"x": 1}, 5, None, True], "kind"),
        ]
    ],
    ("preference", ("labels",), LISTS, "'labels'"),
    ("preference", ("labels", 1), OBJECTS, "labels[1]"),
    *[
        ("preference", ("labels", 0, field), values, f"labels[0]: '{field}'")
        for field, values in [
            ("text", TEXTS),
            ("value", TEXTS),
            ("tooltip", TEXTS),
            ("key", KEYS),
            ("means", [["A"], {"x": 1}, 1, True, "C", None]),
            ("strength", [True, "2", 2.5, 0, 4, ["x"]]),
        ]
    ],
    *[
        (kind, path, values, named)
        for kind in ("choice", "multichoice")
        for path, values, named in [
            (("options",), LISTS, "'options'"),
            (("options", 0), [5, 1.5, True, ["x"], None], "options[0]"),
            (("options", 0, "value"), [5, True, ["x"], {"x": 1}, None, ""], "options[0]: 'value'"),
            (("options", 0, "text"), TEXTS, "options[0]: 'text'"),
            (("options", 0, "tooltip"), TEXTS, "options[0]: 'tooltip'"),
            (("options", 0, "key"), KEYS, "options[0]: 'key'"),
        ]
    ],
    ("rating", ("scale",), OBJECTS, "'scale'"),
    ("rating", ("scale", "min"), WHOLES, "'scale.min'"),
    ("rating", ("scale", "max"), WHOLES, "'scale.max'"),
    ("rating", ("scale", "labels"), OBJECTS, "'scale.labels'"),
    ("rating", ("scale", "labels", "3"), TEXTS, "'scale.labels' '3'"),
    ("rating", ("criterion",), TEXTS, "'criterion'"),
    ("rating", ("weight",), NUMBERS, "'weight'"),
    ("text", ("min_length",), WHOLES, "'min_length'"),
    ("text", ("max_length",), WHOLES, "'max_length'"),
    ("text", ("placeholder",), TEXTS, "'placeholder'"),
    ("text", ("multiline",), FLAGS, "'multiline'"),
]
HOSTILE = [
    pytest.param(kind, path, value, named, id=f"{kind}-{'.'.join(map(str, path))}-{value!r}")
    for kind, path, values, named in FIELDS
    for value in values
]


def with_value(question: dict, path: tuple, value) -> dict:
    question = copy.deepcopy(question)
    holder = question
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return question


def test_every_field_of_every_kind_is_listed():
    """A field added to a kind must be added here with its hostile values."""
    listed = {(kind, path[0]) for kind, path, _, _ in FIELDS}
    read = {
        "preference": {"labels"},
        "choice": {"options"},
        "multichoice": {"options"},
        "rating": {"scale", "criterion", "weight"},
        "text": {"min_length", "max_length", "placeholder", "multiline"},
        "correction": set(),
    }
    for kind, fields in read.items():
        assert {(kind, f) for f in fields | {"description", "required", "kind"}} <= listed
    normalized = validate_questions(
        [PREFERENCE, *[q for k, q in VALID.items() if k != "preference"]]
    )
    for question in normalized:
        assert set(question) - {"name"} <= {f for k, f in listed if k == question["kind"]}


@pytest.mark.parametrize(("kind", "path", "value", "named"), HOSTILE)
def test_a_wrong_type_is_refused_naming_the_question_and_field(kind, path, value, named):
    question = with_value(VALID[kind], path, value)
    others = [VALID["preference"]] if kind != "preference" else []
    with pytest.raises(ValidationError) as info:
        validate_questions([*others, question])
    errors = info.value.messages
    where = f"questions[{len(others)}] {question['name']!r}"
    assert any(e.startswith(where) and named in e for e in errors), errors


@pytest.mark.parametrize("value", [1, 1.5, 0, 2])
def test_a_numeric_weight_is_kept(value):
    question = {**VALID["rating"], "weight": value}
    assert validate_questions([PREFERENCE, question])[1]["weight"] == float(value)


def test_a_digit_key_from_yaml_is_a_shortcut():
    labels = [{**PREFERENCE["labels"][0], "key": 1}, *PREFERENCE["labels"][1:]]
    assert validate_questions([{**PREFERENCE, "labels": labels}])[0]["labels"][0]["key"] == "1"


def test_the_weight_error_speaks_to_the_lead():
    question = {**VALID["rating"], "name": "accuracy", "weight": "heavy"}
    assert errors_of([PREFERENCE, question]) == [
        "questions[1] 'accuracy': 'weight' must be a number ≥ 0 (like 1 or 0.5), "
        "not the text 'heavy'"
    ]


def admin_form_data(response) -> dict:
    """The POST data of an admin change page as it stands, as a browser sends it."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        if field.disabled:
            continue
        value = form[name].value()
        if value is False or value is None:
            continue  # an unticked box or an empty choice sends nothing
        data[name] = "on" if value is True else value
    return data


@pytest.mark.django_db
def test_lead_saving_a_wrong_type_in_the_admin_gets_the_form_back(acme, as_user):
    client = as_user(acme.lead)
    url = reverse("admin:tasks_project_change", args=[acme.project.pk])
    data = admin_form_data(client.get(url))
    rating = {"name": "accuracy", "kind": "rating", "weight": "heavy"}
    data["questions"] = json.dumps([*acme.project.questions, rating])
    response = client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["questions"]
    assert any("'accuracy': 'weight' must be a number" in e for e in errors), errors
    assert "&#x27;weight&#x27; must be a number" in response.content.decode()
    acme.project.refresh_from_db()
    assert "accuracy" not in [q["name"] for q in acme.project.questions]
