"""A project's question schema: what an annotator answers for one item.

The shape follows Potato / Argilla: a list of named questions, each with a ``kind`` and its
options. ``validate_questions`` checks a schema and returns it normalized (defaults filled
in); every problem is reported with the question and the field it concerns, e.g.
``questions[1] 'alignment_dimension': options[0].key 'a' is already the shortcut of …``.

Kinds:
- ``preference``: the comparison. In ``pairwise`` projects its labels say what each choice
  means (``A``, ``B``, ``tie``, ``both_bad``, optionally with a ``strength``); in
  ``best_worst`` and ``ranking`` projects it has no labels (candidates are picked by 1..N).
- ``choice`` (one option) / ``multichoice`` (several): options with value, text, key, tooltip.
- ``rating``: a rubric criterion scored per candidate on a scale with optional point labels.
- ``text``: free text, required or not, with a minimum / maximum length and a placeholder.
- ``correction``: the annotator may edit the preferred response.
"""

import re
from typing import Any

from django.core.exceptions import ValidationError

KINDS = ("preference", "choice", "multichoice", "rating", "text", "correction")
MEANINGS = ("A", "B", "tie", "both_bad")
MODES = ("pairwise", "best_worst", "ranking")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Keys the annotate page keeps for itself: the help overlay and submitting.
RESERVED_KEYS = {"?", "enter"}
TEXT_LIMIT = 20_000


class QuestionSchemaError(ValidationError):
    def __init__(self, errors: list[str]):
        self.errors_list = errors
        super().__init__(errors)


class _Checker:
    def __init__(self, mode: str):
        self.mode = mode
        self.errors: list[str] = []
        self.shortcuts: dict[str, str] = {}

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def shortcut(self, where: str, key: Any, owner: str) -> str | None:
        if key in (None, ""):
            return None
        key = str(key).strip().lower()
        if len(key) != 1 and key not in {"space"}:
            self.error(where, f"key {key!r} must be a single character")
            return None
        if key in RESERVED_KEYS:
            self.error(where, f"key {key!r} is reserved by the annotate page")
        elif key in self.shortcuts:
            self.error(where, f"key {key!r} is already the shortcut of {self.shortcuts[key]}")
        else:
            self.shortcuts[key] = owner
        return key


def _text(value: Any, limit: int = 2000) -> str:
    return "" if value is None else str(value)[:limit]


def validate_questions(questions: Any, *, mode: str = "pairwise") -> list[dict]:
    """Check a question schema for a project in ``mode``; return it normalized.

    Raises QuestionSchemaError listing every problem found (not only the first).
    """
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
            check.error(where, "'name' must be a short identifier (letters, digits, _)")
            name = f"#{index}"
        elif name in names:
            check.error(where, f"name {name!r} is used by another question")
        names.add(name)
        where = f"{where} {name!r}"
        kind = question.get("kind")
        if kind not in KINDS:
            check.error(where, f"kind {kind!r} is not one of {', '.join(KINDS)}")
            continue
        normalized.append(_NORMALIZERS[kind](check, where, name, question))
    preference = [q for q in normalized if q["kind"] == "preference"]
    if len(preference) != 1:
        check.error("questions", f"need exactly one 'preference' question, found {len(preference)}")
    if sum(q["kind"] == "correction" for q in normalized) > 1:
        check.error("questions", "at most one 'correction' question")
    if check.errors:
        raise QuestionSchemaError(check.errors)
    return normalized


def _base(question: dict, name: str, kind: str) -> dict:
    return {
        "name": name,
        "kind": kind,
        "description": _text(question.get("description")),
        "required": bool(question.get("required", kind in ("preference", "choice"))),
    }


def _preference(check: _Checker, where: str, name: str, question: dict) -> dict:
    result = _base(question, name, "preference")
    result["required"] = True
    labels = question.get("labels") or []
    if check.mode != "pairwise":
        if labels:
            check.error(
                where,
                f"'labels' are for pairwise projects; a {check.mode} project "
                "picks candidates by number",
            )
        result["labels"] = []
        return result
    if not isinstance(labels, list) or len(labels) < 2:
        check.error(where, "'labels' must list at least the two choices (A and B)")
        result["labels"] = []
        return result
    normalized, meanings = [], set()
    for i, label in enumerate(labels):
        at = f"{where} labels[{i}]"
        if not isinstance(label, dict):
            check.error(at, "must be an object with 'text' and 'means'")
            continue
        text = _text(label.get("text") or label.get("value"), 200)
        means = label.get("means")
        if not text:
            check.error(at, "'text' is empty")
        if means not in MEANINGS:
            check.error(at, f"'means' must be one of {', '.join(MEANINGS)}, not {means!r}")
        strength = label.get("strength")
        if strength is not None and (not isinstance(strength, int) or not 1 <= strength <= 3):
            check.error(at, "'strength' must be 1, 2 or 3")
        if means in ("tie", "both_bad") and means in meanings:
            check.error(at, f"a second label meaning {means!r}")
        meanings.add(means)
        normalized.append(
            {
                "value": _text(label.get("value") or text, 200),
                "text": text,
                "means": means,
                "strength": strength,
                "tooltip": _text(label.get("tooltip"), 500),
                "key": check.shortcut(at, label.get("key"), f"{name} → {text!r}"),
            }
        )
    if not {"A", "B"} <= meanings:
        check.error(where, "labels must include one meaning 'A' and one meaning 'B'")
    result["labels"] = normalized
    return result


def _choice(check: _Checker, where: str, name: str, question: dict, kind: str) -> dict:
    result = _base(question, name, kind)
    options = question.get("options")
    if not isinstance(options, list) or len(options) < (2 if kind == "choice" else 1):
        check.error(where, f"'options' must list at least {2 if kind == 'choice' else 1}")
        options = []
    normalized, values = [], set()
    for i, option in enumerate(options):
        at = f"{where} options[{i}]"
        if isinstance(option, str):
            option = {"value": option}
        if not isinstance(option, dict) or not _text(option.get("value")):
            check.error(at, "must be a non-empty string or an object with 'value'")
            continue
        value = _text(option["value"], 200)
        if value in values:
            check.error(at, f"value {value!r} appears twice")
        values.add(value)
        normalized.append(
            {
                "value": value,
                "text": _text(option.get("text") or value, 200),
                "tooltip": _text(option.get("tooltip"), 500),
                "key": check.shortcut(at, option.get("key"), f"{name} → {value!r}"),
            }
        )
    result["options"] = normalized
    if kind == "multichoice":
        result["required"] = bool(question.get("required", False))
    return result


def _rating(check: _Checker, where: str, name: str, question: dict) -> dict:
    result = _base(question, name, "rating")
    result["required"] = bool(question.get("required", True))
    scale = question.get("scale") or {}
    low, high = scale.get("min", 1), scale.get("max", 5)
    if not (isinstance(low, int) and isinstance(high, int)) or not low < high <= low + 100:
        check.error(where, "'scale' needs integers min < max (at most 100 points apart)")
        low, high = 1, 5
    point_labels = {}
    for point, text in (scale.get("labels") or {}).items():
        try:
            point_int = int(point)
        except (TypeError, ValueError):
            point_int = None
        if point_int is None or not low <= point_int <= high:
            check.error(where, f"scale label for {point!r} is outside {low}..{high}")
            continue
        point_labels[str(point_int)] = _text(text, 100)
    result["scale"] = {"min": low, "max": high, "labels": point_labels}
    result["criterion"] = _text(question.get("criterion") or question.get("description"))
    result["weight"] = float(question.get("weight", 1.0))
    return result


def _text_question(check: _Checker, where: str, name: str, question: dict) -> dict:
    result = _base(question, name, "text")
    result["required"] = bool(question.get("required", False))
    min_length = question.get("min_length", 0)
    max_length = question.get("max_length", TEXT_LIMIT)
    if not isinstance(min_length, int) or min_length < 0:
        check.error(where, "'min_length' must be a whole number ≥ 0")
        min_length = 0
    if not isinstance(max_length, int) or not 0 < max_length <= TEXT_LIMIT:
        check.error(where, f"'max_length' must be between 1 and {TEXT_LIMIT}")
        max_length = TEXT_LIMIT
    if min_length > max_length:
        check.error(where, "'min_length' is larger than 'max_length'")
    result.update(
        min_length=min_length,
        max_length=max_length,
        placeholder=_text(question.get("placeholder"), 300),
        multiline=bool(question.get("multiline", True)),
    )
    return result


def _correction(check: _Checker, where: str, name: str, question: dict) -> dict:
    result = _base(question, name, "correction")
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


def default_questions(mode: str = "pairwise") -> list[dict]:
    """The schema a new project starts with: the four pairwise choices, or a best/worst
    or ranking comparison, and an optional reasoning box."""
    preference: dict = {"name": "preference", "kind": "preference"}
    if mode == "pairwise":
        preference["labels"] = [
            {"text": "Response A is better", "means": "A", "key": "a"},
            {"text": "Response B is better", "means": "B", "key": "b"},
            {"text": "Tie", "means": "tie", "key": "t"},
            {"text": "Both bad", "means": "both_bad", "key": "x"},
        ]
    reasoning = {"name": "reasoning", "kind": "text", "placeholder": "Why?"}
    return validate_questions([preference, reasoning], mode=mode)
