"""Potato ``config.yaml`` → a Chosen project (settings, questions, layout) and its data.

Both dialects import: the showcase style (``keyboard_shortcuts:`` / ``tooltips:`` maps per
scheme, top-level ``allow_all_users`` …) and Potato 2.x (labels as ``{name, tooltip,
key_value}``, ``user_config``, ``max_annotations_per_item``, ``bws``, ``ranking``,
``multirate``). Unlike Potato itself, every label is kept with its key and tooltip (the seed's
tie / both-bad labels included). A pairwise scheme in ``mode: scale`` (Potato's slider from
``scale.min`` -N to ``scale.max`` +N, negative for the left item A) becomes graded
preference: one label per point, -N..-1 → A with strength N..1, 0 → a tie, 1..N → B with
strength 1..N. Keys that mean nothing on-prem become warnings; an unknown
annotation type or option is an error naming it and its line.
"""

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from django.db import transaction

from tasks.importers.limits import (
    MAX_CONFIG_BYTES,
    ImportTooLarge,
    check_total_bytes,
    config_too_large_message,
)
from tasks.importers.prompts import ImportFailed, ImportReport, import_prompts
from tasks.importers.rows import RowProblem
from tasks.importers.yaml_positions import YamlProblem, load_with_lines
from tasks.models import Organization, Project
from tasks.schema import MAX_STRENGTH_LEVELS, QuestionSchemaError, validate_questions

# Top-level keys that describe Potato's own server, files and look: reported, not used.
SERVER_KEYS = {
    "port",
    "server_name",
    "output_annotation_dir",
    "output_annotation_format",
    "site_dir",
    "customjs",
    "customjs_hostname",
    "base_html_template",
    "header_file",
    "site_file",
    "annotation_codebook_url",
    "login",
    "alert_time_each_instance",
    "jumping_to_id_disabled",
    "hide_navbar",
    "surveyflow",
    "prestudy",
    "list_as_text",
    "horizontal_key_bindings",
    "debug",
    "persist_sessions",
    "secret_key",
    "session_lifetime_days",
    "random_seed",
    "automatic_assignment",
    "assignment_strategy",
    "annotation_output_dir",
    "output_format",
    "server",
    "authentication",
    "ui",
    "ui_config",
    "ui_debug",
    "highlight_linebreaks",
    "keyword_highlights_file",
    "annotation_task_description",
    "context_key",
    "max_file_size",
    "task_description",
    "completion_code",
    "phases",
    "training",
    "active_learning",
    "ai_support",
    "admin_api_key",
    "user_config_file",
    "output",
    "display",
    "header_logo",
    "site_title",
    "host",
    "export_annotation_format",
    "task_layout",
    "output_file",
    "keybinding_strategy",
    "bws_config",
}
MAPPED_KEYS = {
    "annotation_task_name",
    "task_dir",
    "data_files",
    "item_properties",
    "annotation_schemes",
    "annotation_instructions",
    "html_layout",
    "allow_all_users",
    "user_config",
    "instances_per_annotator",
    "max_annotations_per_user",
    "annotation_per_instance",
    "max_annotations_per_item",
    "allow_skip",
    "skip_reason_required",
    "task_name",
    "id_key",
    "text_key",
    "context_key",
    "num_annotators_per_item",
    "min_annotators_per_instance",
    "per_annotator_quota",
}

# Per annotation type: the options it understands, and the presentation-only ones that are
# reported and ignored.
COMMON_OPTIONS = {
    "annotation_type",
    "name",
    "description",
    "labels",
    "keyboard_shortcuts",
    "tooltips",
    "sequential_key_binding",
    "label_requirement",
    "required",
}
PRESENTATION_OPTIONS = {
    "horizontal",
    "displaying_score",
    "show_labels",
    "arrangement",
    "display_config",
    "label_colors",
    "bad_text_label",
    "allow_paste",
    "layout",
    "rows",
    "cols",
    "show_char_count",
    "collapsible",
    "custom_css",
    "tooltip",
    "tooltip_file",
}
# Understood by Potato but without an equivalent here: reported, not fatal.
IGNORED_OPTIONS = {"option_randomization", "tuple_size", "allow_ties"}
TYPE_OPTIONS = {
    "pairwise": {"mode", "items_key", "allow_tie", "tie_label", "scale"},
    "radio": set(),
    "multiselect": {"min_selections", "max_selections"},
    "likert": {"size", "min_label", "max_label", "min_value", "max_value"},
    "number": {"min", "max", "min_value", "max_value"},
    "text": {"textarea", "multiline", "placeholder", "min_length", "max_length", "min_chars"},
    "bws": {"best_description", "worst_description", "items_key"},
    "ranking": {"items_key"},
    "multirate": {"options", "min_label", "max_label"},
}

TIE = re.compile(r"\b(tie|tied|equal(ly)?|same|both (good|fine|acceptable)|no preference)\b", re.I)
BOTH_BAD = re.compile(r"\b(both (are )?bad|neither|none)\b", re.I)
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def config_problem(file: str, line: int | None, key: str | None, message: str) -> RowProblem:
    """A problem of a config key, in the same shape as a data row's."""
    return RowProblem(file, f"line {line}" if line else "", message, key=key)


class PotatoImportFailed(Exception):
    """The config or its data had problems; nothing was written."""

    def __init__(self, problems: list, report: ImportReport | None = None):
        self.problems, self.report = problems, report
        super().__init__("; ".join(str(p) for p in problems[:5]))

    def as_list(self) -> list[dict]:
        return [p.as_dict() for p in self.problems]


@dataclass
class PotatoConfig:
    fields: dict
    questions: list
    data_files: list[str]
    warnings: list[str] = field(default_factory=list)
    source: str = ""


class _Config:
    def __init__(self, name: str, data: dict, lines: dict[str, int]):
        self.name, self.data, self.lines = name, data, lines
        self.problems: list[RowProblem] = []
        self.warnings: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(config_problem(self.name, self._line(key), key, message))

    def warn(self, key: str, message: str) -> None:
        line = self._line(key)
        self.warnings.append(
            f"{self.name}{f', line {line}' if line else ''}, key '{key}': {message}"
        )

    def _line(self, key: str) -> int | None:
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key.rpartition(".")[0] if "." in key else ""
        return None


def parse_config(text: str, *, name: str = "config.yaml") -> PotatoConfig:
    """Read a Potato config; raise PotatoImportFailed listing every problem."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise PotatoImportFailed([config_problem(name, None, None, config_too_large_message(size))])
    try:
        data, lines = load_with_lines(text)
    except YamlProblem as exc:
        raise PotatoImportFailed([config_problem(name, exc.line, None, exc.message)]) from None
    if not isinstance(data, dict):
        raise PotatoImportFailed([config_problem(name, 1, None, "a Potato config is a mapping")])
    cfg = _Config(name, data, lines)
    for key in data:
        if key == "data_directory":
            cfg.problem(key, "list the files under data_files instead")
        elif key in SERVER_KEYS:
            cfg.warn(key, "describes Potato's own server or files; not used by Chosen")
        elif key not in MAPPED_KEYS:
            cfg.problem(key, "unsupported option")

    fields: dict[str, Any] = {}
    title = data.get("annotation_task_name", data.get("task_name"))
    if not isinstance(title, str) or not title.strip():
        cfg.problem("annotation_task_name", "required: the project's name")
    else:
        fields["name"] = title.strip()[:200]

    properties = data.get("item_properties") or {}
    if not isinstance(properties, dict):
        cfg.problem("item_properties", "must be a mapping with id_key and text_key")
        properties = {}
    for key in properties:
        if key not in ("id_key", "text_key", "context_key", "kwargs", "category_key"):
            cfg.problem(f"item_properties.{key}", "unsupported option")
    # The showcase puts id_key / text_key / context_key at the top level.
    fields["id_key"] = str(properties.get("id_key", data.get("id_key", "id")))
    text_key = properties.get("text_key", data.get("text_key", "text"))
    context_key = properties.get("context_key", data.get("context_key"))
    items_key = next(
        (
            s.get("items_key")
            for s in data.get("annotation_schemes") or []
            if isinstance(s, dict) and s.get("items_key")
        ),
        None,
    )
    if isinstance(text_key, list):  # the texts to compare, listed by field
        fields["candidate_fields"] = [str(k) for k in text_key]
        text_key = context_key or "text"
    elif items_key:  # Potato 2.x: one field holds the list of texts to compare
        fields["candidate_fields"] = [str(items_key)]
        if items_key == text_key:
            if not context_key:
                cfg.problem(
                    "item_properties.text_key",
                    f"'{text_key}' holds the texts to compare; "
                    "name the prompt's field with item_properties.context_key",
                )
            text_key = context_key or text_key
    fields["text_key"] = str(text_key)

    _settings(cfg, data, fields)
    questions, mode = _schemes(cfg, data.get("annotation_schemes"))
    fields["mode"] = mode

    layout = data.get("html_layout")
    if (
        isinstance(layout, str)
        and layout.strip()
        and layout.strip() not in ("default", "fixed_keybinding")
    ):
        if "\n" not in layout.strip() and layout.strip().endswith((".html", ".htm")):
            cfg.warn("html_layout", "names a layout file; the default layout is used")
        else:
            fields["html_layout"] = layout
            placeholders = [
                p
                for p in dict.fromkeys(PLACEHOLDER.findall(layout))
                if p not in (fields["id_key"], fields["text_key"])
            ]
            if placeholders and "candidate_fields" not in fields:
                fields["candidate_fields"] = placeholders

    instructions = data.get("annotation_instructions")
    if instructions is not None:
        fields["guidelines"] = str(instructions).strip()

    data_files = data.get("data_files") or []
    if isinstance(data_files, str):
        data_files = [data_files]
    if not isinstance(data_files, list) or not all(isinstance(f, str) for f in data_files):
        cfg.problem("data_files", "must be a list of file paths")
        data_files = []

    if questions is not None:
        try:
            questions = validate_questions(questions, mode=mode)
        except QuestionSchemaError as exc:
            for message in exc.errors_list:
                cfg.problem("annotation_schemes", message)
    if cfg.problems:
        raise PotatoImportFailed(cfg.problems)
    fields["questions"] = questions
    fields["reasoning_required"] = any(
        q["kind"] == "text" and q["name"] == "reasoning" and q["required"] for q in questions
    )
    return PotatoConfig(fields, questions, data_files, cfg.warnings, text)


def _settings(cfg: _Config, data: dict, fields: dict) -> None:
    user_config = data.get("user_config") or {}
    if not isinstance(user_config, dict):
        cfg.problem("user_config", "must be a mapping")
        user_config = {}
    for key in user_config:
        if key not in ("allow_all_users", "users"):
            cfg.problem(f"user_config.{key}", "unsupported option")
    allow_all = data.get("allow_all_users", user_config.get("allow_all_users", True))
    fields["annotator_access"] = (
        Project.AnnotatorAccess.ALL
        if _bool(cfg, "allow_all_users", allow_all)
        else Project.AnnotatorAccess.CHOSEN
    )
    if user_config.get("users"):
        cfg.warn("user_config.users", "choose the project's annotators in Chosen (admin)")

    per_annotator = data.get("per_annotator_quota")
    if isinstance(per_annotator, dict):
        per_annotator = per_annotator.get("default")
    for key, value in (
        ("instances_per_annotator", data.get("instances_per_annotator")),
        ("max_annotations_per_user", data.get("max_annotations_per_user")),
        ("per_annotator_quota", per_annotator),
    ):
        if value is not None:
            fields["quota_per_annotator"] = _int(cfg, key, value, low=1, allow_unlimited=True)
            break
    for key in (
        "annotation_per_instance",
        "max_annotations_per_item",
        "num_annotators_per_item",
        "min_annotators_per_instance",
    ):
        if data.get(key) is not None:
            fields["annotations_per_item"] = (
                _int(cfg, key, data[key], low=1, allow_unlimited=True) or 1
            )
            break
    if "allow_skip" in data:
        fields["allow_skip"] = _bool(cfg, "allow_skip", data["allow_skip"])
    if "skip_reason_required" in data:
        fields["skip_reason_required"] = _bool(
            cfg, "skip_reason_required", data["skip_reason_required"]
        )


def _bool(cfg: _Config, key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    cfg.problem(key, f"must be true or false, not {value!r}")
    return False


def _int(
    cfg: _Config, key: str, value: Any, *, low: int, allow_unlimited: bool = False
) -> int | None:
    if allow_unlimited and value in (-1, None):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        cfg.problem(key, f"must be a whole number ≥ {low}, not {value!r}")
        return None
    return value


def _schemes(cfg: _Config, schemes: Any) -> tuple[list | None, str]:
    if not isinstance(schemes, list) or not schemes:
        cfg.problem("annotation_schemes", "required: a list of annotation schemes")
        return None, Project.Mode.PAIRWISE
    questions: list[dict] = []
    mode = Project.Mode.PAIRWISE
    for index, scheme in enumerate(schemes):
        path = f"annotation_schemes[{index}]"
        if not isinstance(scheme, dict):
            cfg.problem(path, "must be a mapping with annotation_type and name")
            continue
        kind = scheme.get("annotation_type")
        if kind not in TYPE_OPTIONS:
            cfg.problem(
                f"{path}.annotation_type",
                f"unsupported annotation type {kind!r} "
                f"(Chosen imports {', '.join(sorted(TYPE_OPTIONS))})",
            )
            continue
        for option in scheme:
            if option in PRESENTATION_OPTIONS:
                cfg.warn(f"{path}.{option}", "presentation option; Chosen's own layout is used")
            elif option in IGNORED_OPTIONS:
                cfg.warn(f"{path}.{option}", "no equivalent in Chosen; ignored")
            elif option not in COMMON_OPTIONS | TYPE_OPTIONS[kind]:
                cfg.problem(f"{path}.{option}", f"unsupported option for {kind}")
        if kind in ("bws", "ranking"):
            mode = Project.Mode.BEST_WORST if kind == "bws" else Project.Mode.RANKING
        questions.extend(_question(cfg, path, kind, scheme))
    return questions, mode


def _labels(cfg: _Config, path: str, scheme: dict) -> list[dict]:
    """Labels with their key and tooltip, from either dialect."""
    shortcuts = scheme.get("keyboard_shortcuts") or {}
    tooltips = scheme.get("tooltips") or {}
    if not isinstance(shortcuts, dict) or not isinstance(tooltips, dict):
        cfg.problem(path, "keyboard_shortcuts and tooltips must map label → value")
        shortcuts, tooltips = {}, {}
    labels = []
    for i, label in enumerate(scheme.get("labels") or []):
        if isinstance(label, dict):
            unknown = set(label) - {"name", "tooltip", "key_value", "tooltip_file", "abbreviation"}
            if unknown:
                cfg.problem(
                    f"{path}.labels[{i}]",
                    f"unsupported label option(s): {', '.join(sorted(unknown))}",
                )
            name = str(label.get("name", "")).strip()
            entry = {
                "value": name,
                "text": name,
                "tooltip": label.get("tooltip") or "",
                "key": label.get("key_value"),
            }
        else:
            name = str(label).strip()
            entry = {"value": name, "text": name, "tooltip": "", "key": None}
        if not name:
            cfg.problem(f"{path}.labels[{i}]", "a label needs a name")
            continue
        entry["tooltip"] = tooltips.get(name, entry["tooltip"])
        entry["key"] = shortcuts.get(name, entry["key"])
        labels.append(entry)
    for name in list(shortcuts) + list(tooltips):
        if name not in {entry["value"] for entry in labels}:
            cfg.problem(
                f"{path}.keyboard_shortcuts" if name in shortcuts else f"{path}.tooltips",
                f"names no label: {name!r}",
            )
    if scheme.get("sequential_key_binding"):
        for position, entry in enumerate(labels[:9], start=1):
            entry["key"] = entry["key"] or str(position)
    return labels


def _question(cfg: _Config, path: str, kind: str, scheme: dict) -> list[dict]:
    name = str(scheme.get("name") or "").strip()
    base = {"name": name, "description": scheme.get("description") or ""}
    # Potato asks nothing to be answered unless the scheme says so (the comparison excepted).
    requirement = scheme.get("label_requirement")
    if isinstance(requirement, dict):
        requirement = requirement.get("required")
    required = scheme.get("required", requirement)
    base["required"] = bool(required)
    if kind == "pairwise":
        mode = scheme.get("mode", "binary")
        if mode == "scale":
            return [{**base, **_graded_scale(cfg, path, scheme)}]
        if mode != "binary":
            cfg.problem(
                f"{path}.mode",
                f"pairwise mode {mode!r} is not supported; use 'binary' labels or 'scale'",
            )
        if "scale" in scheme:
            cfg.warn(f"{path}.scale", "is for mode: scale; ignored in binary mode")
        labels = _labels(cfg, path, scheme) or [
            {"value": "A", "text": "A", "tooltip": "", "key": None},
            {"value": "B", "text": "B", "tooltip": "", "key": None},
        ]
        if scheme.get("allow_tie"):
            tie = str(scheme.get("tie_label") or "Tie")
            labels.append({"value": tie, "text": tie, "tooltip": "", "key": None, "means": "tie"})
        for position, label in enumerate(labels):
            if "means" not in label:
                label["means"] = _meaning(cfg, path, position, label["text"])
        if scheme.get("sequential_key_binding", True):  # Potato's default for pairwise: 1 / 2 / 0
            for label in labels:
                default = {"A": "1", "B": "2", "tie": "0"}.get(label["means"])
                taken = {other["key"] for other in labels}
                if not label["key"] and default not in taken:
                    label["key"] = default
        return [{**base, "kind": "preference", "labels": labels}]
    if kind in ("bws", "ranking"):
        if scheme.get("labels"):
            cfg.warn(
                f"{path}.labels",
                "Chosen ranks each prompt's candidates; these fixed labels are not used",
            )
        return [{**base, "kind": "preference"}]
    if kind in ("radio", "multiselect"):
        return [
            {
                **base,
                "kind": "choice" if kind == "radio" else "multichoice",
                "options": _labels(cfg, path, scheme),
            }
        ]
    if kind == "likert" and scheme.get("labels"):  # Potato renders it as a radio
        return [{**base, "kind": "choice", "options": _labels(cfg, path, scheme)}]
    if kind == "likert":
        size = scheme.get("size", 5)
        if not isinstance(size, int) or not 2 <= size <= 11:
            cfg.problem(f"{path}.size", f"must be a whole number from 2 to 11, not {size!r}")
            size = 5
        low = scheme.get("min_value", 1)
        point_labels = {
            str(low): scheme.get("min_label", ""),
            str(low + size - 1): scheme.get("max_label", ""),
        }
        return [
            {
                **base,
                "kind": "rating",
                "scale": {
                    "min": low,
                    "max": low + size - 1,
                    "labels": {k: v for k, v in point_labels.items() if v},
                },
            }
        ]
    if kind == "number":
        low = scheme.get("min", scheme.get("min_value", 0))
        high = scheme.get("max", scheme.get("max_value", 10))
        return [{**base, "kind": "rating", "scale": {"min": low, "max": high}}]
    if kind == "text":
        if scheme.get("labels"):
            cfg.problem(
                f"{path}.labels",
                "several text boxes in one scheme are not supported; use one text scheme per box",
            )
        textarea = scheme.get("textarea", scheme.get("multiline", True))
        multiline = textarea.get("on", True) if isinstance(textarea, dict) else bool(textarea)
        return [
            {
                **base,
                "kind": "text",
                "multiline": multiline,
                "placeholder": scheme.get("placeholder") or "",
                "min_length": scheme.get("min_length", scheme.get("min_chars", 0)),
                "max_length": scheme.get("max_length", 20_000),
            }
        ]
    if kind == "multirate":
        options = [
            o.get("label") or o.get("name") if isinstance(o, dict) else o
            for o in scheme.get("options") or []
        ]
        scale = [
            str(label) if not isinstance(label, dict) else str(label.get("name"))
            for label in scheme.get("labels") or []
        ]
        if not options or len(scale) < 2:
            cfg.problem(
                path, "multirate needs 'options' (what is rated) and 2+ 'labels' (the scale)"
            )
            return []
        return [
            {
                "name": _slug(f"{name}_{option}"),
                "kind": "rating",
                "criterion": str(option),
                "description": str(option),
                "scale": {
                    "min": 1,
                    "max": len(scale),
                    "labels": {str(i): text for i, text in enumerate(scale, start=1)},
                },
            }
            for option in options
        ]
    return []


def _graded_scale(cfg: _Config, path: str, scheme: dict) -> dict:
    """Potato's pairwise slider as graded preference labels.

    Potato (docs/annotation-types/comparison/pairwise_annotation.md, "Scale Mode"): the
    slider runs from ``scale.min`` to ``scale.max`` in ``scale.step`` steps; negative values
    prefer the left item (A), zero is "no preference", positive values the right one (B);
    ``scale.labels`` names the ends and the centre. Here each point is a label, left to
    right with keys 1..9 (when the scale has at most nine points): -s → A with strength s,
    0 → a tie, +s → B with strength s."""
    scale = scheme.get("scale") or {}
    if not isinstance(scale, dict):
        cfg.problem(f"{path}.scale", "must be a mapping with min, max and step")
        scale = {}
    unknown = set(scale) - {"min", "max", "step", "default", "labels"}
    if unknown:
        cfg.problem(f"{path}.scale", f"unsupported option(s): {', '.join(sorted(unknown))}")
    low, high, step = scale.get("min", -3), scale.get("max", 3), scale.get("step", 1)
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step))
    levels = high if whole and low == -high else None
    if levels is None or not 1 <= levels <= MAX_STRENGTH_LEVELS or step != 1:
        cfg.problem(
            f"{path}.scale",
            f"a graded comparison needs a whole-number scale from -N to N in steps of 1, "
            f"N at most {MAX_STRENGTH_LEVELS} (like min: -3, max: 3), not min {low!r}, "
            f"max {high!r}, step {step!r}",
        )
        levels = 3
    if "default" in scale:
        cfg.warn(f"{path}.scale.default", "Chosen preselects no answer; ignored")
    ends = scale.get("labels") or {}
    if not isinstance(ends, dict):
        cfg.problem(f"{path}.scale.labels", "must map min / max / center to a text")
        ends = {}
    names = scheme.get("labels") if isinstance(scheme.get("labels"), list) else []
    first = str(names[0]) if len(names) > 0 else "A"  # what Potato calls the two items
    second = str(names[1]) if len(names) > 1 else "B"
    if scheme.get("allow_tie") or scheme.get("tie_label"):
        cfg.warn(f"{path}.allow_tie", "the scale's centre (0) is the tie")
    labels = []
    for point in range(-levels, levels + 1):
        strength = abs(point) or None
        means = "A" if point < 0 else "B" if point > 0 else "tie"
        side = first if point < 0 else second
        if point == -levels and ends.get("min"):
            text = str(ends["min"])
        elif point == levels and ends.get("max"):
            text = str(ends["max"])
        elif point == 0:
            text = str(ends.get("center") or scheme.get("tie_label") or "Equal")
        elif levels == 3:
            text = f"{side} {('slightly better', 'better', 'much better')[abs(point) - 1]}"
        else:
            text = f"{side} better ({abs(point)} of {levels})"
        labels.append(
            {
                "value": str(point),
                "text": text[:200],
                "means": means,
                "strength": strength,
                "tooltip": "",
                "key": str(point + levels + 1) if 2 * levels + 1 <= 9 else None,
            }
        )
    return {"kind": "preference", "strength_levels": levels, "labels": labels}


def _meaning(cfg: _Config, path: str, position: int, text: str) -> str:
    if BOTH_BAD.search(text):
        return "both_bad"
    if TIE.search(text):
        return "tie"
    if position < 2:
        return "AB"[position]
    cfg.problem(
        f"{path}.labels[{position}]",
        f"cannot tell whether {text!r} means a tie or both "
        "bad; name it e.g. 'Equally Good' or 'Both Bad'",
    )
    return "tie"


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_").lower()[:63]
    return slug if slug and not slug[0].isdigit() else f"q_{slug}"[:63]


# --- writing ---------------------------------------------------------------------------------


def import_potato_project(
    *,
    organization: Organization,
    config_text: str,
    config_name: str = "config.yaml",
    data_files: dict[str, IO[bytes]] | None = None,
    base_dir: Path | None = None,
    skip_invalid: bool = False,
    progress=None,
) -> tuple[Project, bool, ImportReport, list[str]]:
    """Create (or update, matched by name) a project from a Potato config and import its
    data files. Data files come either as uploaded streams by name or from ``base_dir``
    (the config's folder). All or nothing: on any problem PotatoImportFailed is raised and
    nothing is written. Returns (project, created, report, warnings)."""
    config = parse_config(config_text, name=config_name)
    streams, problems = _open_data_files(config, data_files, base_dir)
    if data_files is None and not problems:  # read from disk: the uploads' limit applies too
        try:
            check_total_bytes(
                [
                    len(config_text.encode()),
                    *(Path(stream.name).stat().st_size for stream in streams.values()),
                ]
            )
        except ImportTooLarge as exc:
            problems.append(config_problem(config_name, None, "data_files", str(exc)))
    if problems:
        _close(streams)
        raise PotatoImportFailed(problems)
    try:
        with transaction.atomic():
            fields = {k: v for k, v in config.fields.items() if k != "name"}
            project = Project.objects.filter(
                organization=organization, name=config.fields["name"]
            ).first()
            created = project is None
            if created:
                project = Project(
                    organization=organization,
                    name=config.fields["name"],
                    status=Project.Status.ACTIVE,
                )
            for key, value in fields.items():
                setattr(project, key, value)
            project.source_config = config.source
            project.import_warnings = config.warnings
            project.full_clean()
            project.save()
            report = import_prompts(
                project=project,
                files=list(streams.items()),
                skip_invalid=skip_invalid,
                progress=progress,
            )
    except ImportFailed as exc:
        raise PotatoImportFailed(exc.report.problems, exc.report) from None
    finally:
        _close(streams)
    return project, created, report, config.warnings


def _open_data_files(config: PotatoConfig, uploaded, base_dir):
    streams: dict[str, IO[bytes]] = {}
    problems: list = []
    for index, name in enumerate(config.data_files):
        key = f"data_files[{index}]"
        if uploaded is not None:
            stream = uploaded.get(name) or uploaded.get(Path(name).name)
            if stream is None:
                problems.append(
                    config_problem("config.yaml", None, key, f"data file {name!r} was not uploaded")
                )
                continue
            streams[name] = stream
            continue
        path = (base_dir / name) if base_dir else Path(name)
        if not path.is_file():
            problems.append(RowProblem(str(path), "file", f"data file not found (named in {key})"))
            continue
        streams[name] = path.open("rb")
    return streams, problems


def _close(streams: dict) -> None:
    for stream in streams.values():
        with contextlib.suppress(Exception):  # closing after a failure must not mask it
            stream.close()
