"""A project's question schema: what an annotator answers for one item.

The shape follows Potato / Argilla: a list of named questions, each with a ``kind`` and its
options. ``validate_questions`` checks a schema and returns it normalized (defaults filled
in); every problem is reported with the question and the field it concerns, e.g.
``questions[1] 'alignment_dimension': options[0].key 'a' is already the shortcut of …``.

Kinds:
- ``preference``: the comparison. In ``pairwise`` projects its labels say what each choice
  means (``A``, ``B``, ``tie``, ``both_bad``, optionally with a ``strength`` from 1 to the
  question's ``strength_levels``, 3 unless it says more, at most 5: "slightly / clearly /
  much better", Llama 2's graded scale); in ``best_worst`` and ``ranking`` projects it has
  no labels (candidates are picked by 1..N). A question whose labels carry strengths asks
  for graded preference (``strength_levels``).
- ``choice`` (one option) / ``multichoice`` (several): options with value, text, key, tooltip.
- ``rating``: a rubric criterion scored per candidate on a scale with optional point labels.
- ``text``: free text, required or not, with a minimum / maximum length and a placeholder.
- ``correction``: the annotator may edit the preferred response.
"""

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from django.core.exceptions import ValidationError

KINDS = ("preference", "choice", "multichoice", "rating", "text", "correction")
MEANINGS = ("A", "B", "tie", "both_bad")
MODES = ("pairwise", "best_worst", "ranking")
CHAT = "chat"  # Chat & Choose (the chat app): judged as a pair or a ranking, see below
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Keys the annotate page keeps for itself: the help overlay and submitting.
RESERVED_KEYS = {"?", "enter"}
TEXT_LIMIT = 20_000
# Graded preference: a label's strength runs from 1 to the question's ``strength_levels``.
# Three levels (slightly / clearly / much) unless a question asks for more; five at most
# (Potato's widest documented slider, -5..+5).
STRENGTH_LEVELS = 3
MAX_STRENGTH_LEVELS = 5
# Whether a question must be answered when its schema does not say (the comparison always
# must, a correction never).
REQUIRED_BY_DEFAULT = {
    "preference": True,
    "choice": True,
    "multichoice": False,
    "rating": True,
    "text": False,
    "correction": False,
}


@dataclass(frozen=True)
class SchemaProblem:
    """One problem of a schema, placed: the question (its index in the list), the list
    inside it (``labels`` or ``options``) and the row there, and the field (``key``,
    ``scale.min``; empty for the whole question or row). An editor shows ``message`` (the
    text of ``errors_list``) beside that field."""

    message: str
    question: int | None = None
    part: str | None = None
    index: int | None = None
    field: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# What _Checker's ``where`` says: ``questions[1] 'name' labels[0]``.
WHERE_RE = re.compile(r"^questions\[(\d+)\](?: '[^']*')?(?: (labels|options)\[(\d+)\])?$")


def _place(where: str, message: str, field: str) -> SchemaProblem:
    found = WHERE_RE.match(where)
    if found is None:
        # the schema as a whole ("questions"), or the project's mode
        return SchemaProblem(message, field="" if where == "questions" else where)
    question, part, index = found.groups()
    return SchemaProblem(
        message, int(question), part, int(index) if index is not None else None, field
    )


class QuestionSchemaError(ValidationError):
    """The problems of a schema: ``errors_list`` as text, ``problems`` placed at their
    fields (the same order; placed from the text when only that is given)."""

    def __init__(self, errors: list[str], problems: list[SchemaProblem] | None = None):
        self.errors_list = errors
        self.problems = problems or [_place(e.split(": ", 1)[0], e, "") for e in errors]
        super().__init__(errors)


class _Checker:
    def __init__(self, mode: str):
        self.mode = mode
        self.errors: list[str] = []
        self.problems: list[SchemaProblem] = []
        self.shortcuts: dict[str, str] = {}

    def error(self, where: str, message: str, *, field: str = "") -> None:
        self.errors.append(f"{where}: {message}")
        self.problems.append(_place(where, self.errors[-1], field))

    # Each field's type. A field left out (or null) takes its default; a value of another
    # type is an error naming the field and what was given, and the default stands in.

    def text(self, where: str, obj: dict, field: str, limit: int = 2000) -> str:
        value = obj.get(field)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.error(where, f"'{field}' must be text, not {_shown(value)}", field=field)
            return ""
        return value[:limit]

    def flag(self, where: str, obj: dict, field: str, default: bool) -> bool:
        value = obj.get(field)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.error(where, f"'{field}' must be true or false, not {_shown(value)}", field=field)
            return default
        return value

    def whole(
        self, where: str, obj: dict, field: str, default: int, *, path: str = ""
    ) -> int | None:
        """A whole number; None (after reporting it) when it is something else. ``path``
        names a field inside another (``scale.min``)."""
        value = obj.get(field)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(
                where,
                f"'{path or field}' must be a whole number, not {_shown(value)}",
                field=path or field,
            )
            return None
        return value

    def number(self, where: str, obj: dict, field: str, default: float) -> float:
        value = obj.get(field)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            self.error(
                where,
                f"'{field}' must be a number ≥ 0 (like 1 or 0.5), not {_shown(value)}",
                field=field,
            )
            return default
        return float(value)

    def mapping(self, where: str, obj: dict, field: str, *, path: str = "") -> dict:
        value = obj.get(field)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(
                where,
                f"'{path or field}' must be an object, not {_shown(value)}",
                field=path or field,
            )
            return {}
        return value

    def shortcut(self, where: str, obj: dict, owner: str) -> str | None:
        key = obj.get("key")
        if key in (None, ""):
            return None
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 9:
            key = str(key)  # a digit, as YAML reads `key_value: 1`
        if not isinstance(key, str):
            self.error(where, f"'key' must be a single character, not {_shown(key)}", field="key")
            return None
        key = key.strip().lower()
        if len(key) != 1 and key not in {"space"}:
            self.error(where, f"key {key!r} must be a single character", field="key")
            return None
        if key in RESERVED_KEYS:
            self.error(where, f"key {key!r} is reserved by the annotate page", field="key")
        elif key in self.shortcuts:
            self.error(
                where, f"key {key!r} is already the shortcut of {self.shortcuts[key]}", field="key"
            )
        else:
            self.shortcuts[key] = owner
        return key


def _shown(value: Any) -> str:
    """A JSON value as the person who wrote it would name it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def validate_questions(questions: Any, *, mode: str = "pairwise") -> list[dict]:
    """Check a question schema for a project in ``mode``; return it normalized.

    Raises QuestionSchemaError listing every problem found (not only the first). A chat
    project's questions are those of the mode its turns are judged in (the chat app's
    settings decide it): a pair when the comparison has labels, else a ranking.
    """
    if mode == CHAT:
        mode = chat_judging_mode(questions)
    if mode not in MODES:
        raise QuestionSchemaError([f"mode: must be one of {', '.join(MODES)}, not {mode!r}"])
    if not isinstance(questions, list):
        raise QuestionSchemaError(["questions: must be a list of questions"])
    check = _Checker(mode)
    names: set[str] = set()
    normalized = []
    for index, question in enumerate(questions):
        where = f"questions[{index}]"
        if not isinstance(question, dict):
            check.error(where, "must be an object with 'name' and 'kind'")
            continue
        name = question.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            check.error(
                where, "'name' must be a short identifier (letters, digits, _)", field="name"
            )
            name = f"#{index}"
        elif name in names:
            check.error(where, f"name {name!r} is used by another question", field="name")
        names.add(name)
        where = f"{where} {name!r}"
        kind = question.get("kind")
        if not isinstance(kind, str):
            check.error(
                where, f"'kind' must be one of {', '.join(KINDS)}, not {_shown(kind)}", field="kind"
            )
            continue
        if kind not in KINDS:
            check.error(where, f"kind {kind!r} is not one of {', '.join(KINDS)}", field="kind")
            continue
        normalized.append(_NORMALIZERS[kind](check, where, name, question))
    preference = [q for q in normalized if q["kind"] == "preference"]
    if len(preference) != 1:
        check.error("questions", f"need exactly one 'preference' question, found {len(preference)}")
    if sum(q["kind"] == "correction" for q in normalized) > 1:
        check.error("questions", "at most one 'correction' question")
    if check.errors:
        raise QuestionSchemaError(check.errors, check.problems)
    return normalized


def _base(check: _Checker, where: str, question: dict, name: str, kind: str) -> dict:
    return {
        "name": name,
        "kind": kind,
        "description": check.text(where, question, "description"),
        "required": check.flag(where, question, "required", REQUIRED_BY_DEFAULT[kind]),
    }


def _preference(check: _Checker, where: str, name: str, question: dict) -> dict:
    result = _base(check, where, question, name, "preference")
    result["required"] = True
    labels = question.get("labels") or []
    if check.mode != "pairwise":
        if labels:
            check.error(
                where,
                f"'labels' are for pairwise projects; a {check.mode} project "
                "picks candidates by number",
                field="labels",
            )
        result["labels"] = []
        return result
    if not isinstance(labels, list) or len(labels) < 2:
        check.error(where, "'labels' must list at least the two choices (A and B)", field="labels")
        result["labels"] = []
        return result
    levels = _strength_levels(check, where, question, result)
    normalized, meanings = [], set()
    for i, label in enumerate(labels):
        at = f"{where} labels[{i}]"
        if not isinstance(label, dict):
            check.error(at, "must be an object with 'text' and 'means'")
            continue
        value = check.text(at, label, "value", 200)
        text = check.text(at, label, "text", 200) or value
        if not text:
            check.error(at, "'text' is empty", field="text")
        means = label.get("means")
        if not isinstance(means, str) or means not in MEANINGS:
            shown = repr(means) if isinstance(means, str) else _shown(means)
            check.error(
                at, f"'means' must be one of {', '.join(MEANINGS)}, not {shown}", field="means"
            )
            means = None
        strength = label.get("strength")
        if strength is not None and (
            isinstance(strength, bool)
            or not isinstance(strength, int)
            or not 1 <= strength <= levels
        ):
            check.error(
                at,
                f"'strength' must be a whole number from 1 to {levels} (the question's "
                f"'strength_levels', at most {MAX_STRENGTH_LEVELS}), not {_shown(strength)}",
                field="strength",
            )
            strength = None
        if means in ("tie", "both_bad") and means in meanings:
            check.error(at, f"a second label meaning {means!r}", field="means")
        meanings.add(means)
        normalized.append(
            {
                "value": value or text,
                "text": text,
                "means": means,
                "strength": strength,
                "tooltip": check.text(at, label, "tooltip", 500),
                "key": check.shortcut(at, label, f"{name} → {text!r}"),
            }
        )
    if not {"A", "B"} <= meanings:
        check.error(
            where, "labels must include one meaning 'A' and one meaning 'B'", field="labels"
        )
    result["labels"] = normalized
    return result


def _strength_levels(check: _Checker, where: str, question: dict, result: dict) -> int:
    """The question's number of strength levels. Kept in the schema only when it is given,
    so that re-checking an older schema changes nothing (and bumps no schema version)."""
    levels = check.whole(where, question, "strength_levels", STRENGTH_LEVELS)
    if levels is None:
        return STRENGTH_LEVELS
    if not 1 <= levels <= MAX_STRENGTH_LEVELS:
        check.error(
            where,
            f"'strength_levels' must be from 1 to {MAX_STRENGTH_LEVELS}, not {levels}",
            field="strength_levels",
        )
        return STRENGTH_LEVELS
    if question.get("strength_levels") is not None:
        result["strength_levels"] = levels
    return levels


def strength_levels(question: dict | None) -> int | None:
    """How many strength levels a (normalized) preference question asks for: None when
    its labels carry no strength (the project does not ask for graded preference)."""
    if not question or not any(label.get("strength") for label in question.get("labels", [])):
        return None
    return question.get("strength_levels") or STRENGTH_LEVELS


def _choice(check: _Checker, where: str, name: str, question: dict, kind: str) -> dict:
    result = _base(check, where, question, name, kind)
    options = question.get("options")
    if not isinstance(options, list) or len(options) < (2 if kind == "choice" else 1):
        check.error(
            where, f"'options' must list at least {2 if kind == 'choice' else 1}", field="options"
        )
        options = []
    normalized, values = [], set()
    for i, option in enumerate(options):
        at = f"{where} options[{i}]"
        if isinstance(option, str):
            option = {"value": option}
        if not isinstance(option, dict):
            check.error(at, f"must be a string or an object with 'value', not {_shown(option)}")
            continue
        value = option.get("value")
        if not isinstance(value, str) or not value.strip():
            shown = "empty" if value in (None, "") else _shown(value)
            check.error(at, f"'value' must be a non-empty text, not {shown}", field="value")
            continue
        value = value[:200]
        if value in values:
            check.error(at, f"value {value!r} appears twice", field="value")
        values.add(value)
        normalized.append(
            {
                "value": value,
                "text": check.text(at, option, "text", 200) or value,
                "tooltip": check.text(at, option, "tooltip", 500),
                "key": check.shortcut(at, option, f"{name} → {value!r}"),
            }
        )
    result["options"] = normalized
    return result


def _rating(check: _Checker, where: str, name: str, question: dict) -> dict:
    result = _base(check, where, question, name, "rating")
    scale = check.mapping(where, question, "scale")
    low = check.whole(where, scale, "min", 1, path="scale.min")
    high = check.whole(where, scale, "max", 5, path="scale.max")
    if low is None or high is None:
        low, high = 1, 5
    elif not low < high <= low + 100:
        check.error(
            where, "'scale' needs integers min < max (at most 100 points apart)", field="scale"
        )
        low, high = 1, 5
    point_labels = {}
    for point, text in check.mapping(where, scale, "labels", path="scale.labels").items():
        try:
            point_int = int(point)
        except (TypeError, ValueError):
            point_int = None
        if point_int is None or not low <= point_int <= high:
            check.error(
                where, f"scale label for {point!r} is outside {low}..{high}", field="scale.labels"
            )
            continue
        if not isinstance(text, str):
            check.error(
                where,
                f"'scale.labels' {point!r} must be text, not {_shown(text)}",
                field="scale.labels",
            )
            continue
        point_labels[str(point_int)] = text[:100]
    result["scale"] = {"min": low, "max": high, "labels": point_labels}
    result["criterion"] = check.text(where, question, "criterion") or result["description"]
    result["weight"] = check.number(where, question, "weight", 1.0)
    return result


def _text_question(check: _Checker, where: str, name: str, question: dict) -> dict:
    result = _base(check, where, question, name, "text")
    min_length = check.whole(where, question, "min_length", 0)
    max_length = check.whole(where, question, "max_length", TEXT_LIMIT)
    if min_length is None or min_length < 0:
        if min_length is not None:
            check.error(where, "'min_length' must be a whole number ≥ 0", field="min_length")
        min_length = 0
    if max_length is None or not 0 < max_length <= TEXT_LIMIT:
        if max_length is not None:
            check.error(
                where, f"'max_length' must be between 1 and {TEXT_LIMIT}", field="max_length"
            )
        max_length = TEXT_LIMIT
    if min_length > max_length:
        check.error(where, "'min_length' is larger than 'max_length'", field="min_length")
    result.update(
        min_length=min_length,
        max_length=max_length,
        placeholder=check.text(where, question, "placeholder", 300),
        multiline=check.flag(where, question, "multiline", True),
    )
    return result


def _correction(check: _Checker, where: str, name: str, question: dict) -> dict:
    result = _base(check, where, question, name, "correction")
    result["required"] = False
    return result


_NORMALIZERS = {
    "preference": _preference,
    "choice": lambda c, w, n, q: _choice(c, w, n, q, "choice"),
    "multichoice": lambda c, w, n, q: _choice(c, w, n, q, "multichoice"),
    "rating": _rating,
    "text": _text_question,
    "correction": _correction,
}


def chat_judging_mode(questions: Any) -> str:
    """How a chat project's questions judge a turn: pairwise when its comparison has labels
    (two replies), else ranking (three or four)."""
    labelled = isinstance(questions, list) and any(
        isinstance(q, dict) and q.get("kind") == "preference" and q.get("labels") for q in questions
    )
    return "pairwise" if labelled or not questions else "ranking"


def default_questions(mode: str = "pairwise") -> list[dict]:
    """The schema a new project starts with: the four pairwise choices, or a best/worst
    or ranking comparison, and an optional reasoning box."""
    preference: dict = {"name": "preference", "kind": "preference"}
    if mode in ("pairwise", CHAT):
        preference["labels"] = [
            {"text": "Response A is better", "means": "A", "key": "a"},
            {"text": "Response B is better", "means": "B", "key": "b"},
            {"text": "Tie", "means": "tie", "key": "t"},
            {"text": "Both bad", "means": "both_bad", "key": "x"},
        ]
    reasoning = {"name": "reasoning", "kind": "text", "placeholder": "Why?"}
    return validate_questions([preference, reasoning], mode=mode)
