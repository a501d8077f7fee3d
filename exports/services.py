"""Exporting a project to a folder: the split files of one format with their provenance, a
manifest with counts, parameters and sha256 checksums, and a dataset card (README.md with
a Hugging Face YAML header). Or all raw judgments as JSONL (format ``judgments``)."""

import hashlib
import math
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from django.db import transaction
from django.db.models import Count, Exists, OuterRef

from annotation.models import Judgment
from exports.formats import (
    FLAT_FORMATS,
    FORMATS,
    ConversationRefused,
    SplitWriter,
    conversation_refusal,
    dumps,
    llama_factory_info,
)
from exports.pairs import Options, extract
from tasks.models import Project, Prompt

ALL_FORMATS = (*FORMATS, "judgments")


def export_to_folder(project: Project, fmt: str, folder: Path, options: Options) -> dict:
    """Write the export into ``folder`` (created; must be empty or absent) and return its
    manifest. Files are written in a temporary folder beside it and moved in at the end, so
    a failure leaves nothing half-written."""
    if fmt not in ALL_FORMATS:
        raise ValueError(f"format must be one of {', '.join(ALL_FORMATS)}")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty")
    refusal = conversation_problem(project, fmt, options)
    if refusal:
        raise ConversationRefused(refusal)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        manifest = _write(project, fmt, work, options)
        if folder.exists():
            folder.rmdir()
        work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def _write(project: Project, fmt: str, work: Path, options: Options) -> dict:
    models: list[str] = []
    mean_agreement, kto_conflicts = None, None
    if fmt == "judgments":
        files, counts = [_raw_judgments(project, work / "judgments.jsonl")], {}
        counts = {"judgments": files[0]["rows"]}
    else:
        writer = SplitWriter(work, fmt, options)
        try:
            for pair in extract(project, options):
                writer.add(pair)
        finally:
            files = writer.close()
        counts, models = dict(sorted(writer.counts.items())), sorted(writer.models)
        if writer.kto is not None:
            kto_conflicts = writer.kto.conflicts
        if writer.pairs:
            mean_agreement = round(writer.agreement_sum / writer.pairs, 4)
        if fmt == "llama-factory":
            info = llama_factory_info(f"chosen_{project.pk}", files)
            files.append(_text_file(work / "dataset_info.json", dumps(info) + "\n"))
    manifest = {
        "project": {"id": project.pk, "name": project.name},
        "format": fmt,
        "options": asdict(options),
        "counts": counts,
        "mean_agreement": mean_agreement,
        "models": models,
        "labels": _labels(project),
        **({"kto_conflicts": kto_conflicts} if kto_conflicts is not None else {}),
        "files": sorted(files, key=lambda e: e["name"]),
    }
    manifest["files"].append(_text_file(work / "README.md", dataset_card(manifest)))
    manifest["files"].sort(key=lambda e: e["name"])
    (work / "manifest.json").write_text(dumps(manifest) + "\n", encoding="utf-8")
    return manifest


def _text_file(path: Path, text: str) -> dict:
    path.write_text(text, encoding="utf-8", newline="")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return {"name": path.name, "rows": text.count("\n"), "sha256": digest}


def _labels(project: Project) -> dict:
    rows = Judgment.objects.filter(project=project).values_list("label").annotate(n=Count("id"))
    return dict(sorted(rows))


def _raw_judgments(project: Project, path: Path) -> dict:
    """Every judgment of the project, oldest first, with its item, prompt and candidates."""
    digest, rows = hashlib.sha256(), 0
    fields = [
        "id", "item_id", "item__prompt__external_id", "annotator__email", "outcome",
        "chosen_id", "rejected_id", "label", "strength", "ranking", "answers",
        "rubric_scores", "reasoning", "corrected_id", "time_spent_ms", "version",
        "assignment__display_order", "created_at", "updated_at",
    ]  # fmt: skip
    renamed = {
        "item__prompt__external_id": "prompt_external_id",
        "annotator__email": "annotator",
        "assignment__display_order": "display_order",
    }
    names = [renamed.get(f, f) for f in fields]
    query = Judgment.objects.filter(project=project).order_by("id").values_list(*fields)
    with path.open("w", encoding="utf-8", newline="") as handle:
        for values in query.iterator(chunk_size=2000):
            record = dict(zip(names, values, strict=True))
            record["created_at"] = record["created_at"].isoformat()
            record["updated_at"] = record["updated_at"].isoformat()
            line = dumps(record) + "\n"
            handle.write(line)
            digest.update(line.encode("utf-8"))
            rows += 1
    return {"name": path.name, "rows": rows, "sha256": digest.hexdigest()}


# Axolotl's local-file form (src/axolotl/utils/data/shared.py: a `path` that exists is read
# with `ds_type`; a single JSON file is its "train" split) and the multi-turn DPO type
# chat_template.default with its default field names (prompt_strategies/dpo/chat_template.py).
AXOLOTL_DATASET = """  - path: {name}
    ds_type: json
    split: train
    type: chat_template.default
    field_messages: messages
    field_chosen: chosen
    field_rejected: rejected
    roles:
      system: [system]
      user: [user]
      assistant: [assistant]"""

# What each format keeps of a pair, for the dataset card and README.
FORMAT_NOTES = {
    "trl-conversational": "Lossless: the prompt is the whole conversation (system prompt and "
    "earlier turns); TRL applies the model's chat template. The format to use for chat models.",
    "llama-factory": "Lossless: instruction is the last user turn, system the system prompt, "
    "history the earlier [user, assistant] turns.",
    "axolotl": "Lossless: messages is the whole conversation, chosen and rejected are "
    "assistant messages (Axolotl's chat_template.default DPO type).",
    "parquet": "Lossless: prompt is the last user turn, prompt_messages the whole conversation.",
    "trl": "One prompt string: prompt and completion are stored exactly as annotated and TRL "
    "joins them verbatim, with no chat template between them. For chat models use "
    "trl-conversational.",
    "kto": "One prompt string; each distinct completion of a prompt once, labelled by its pairs.",
    "csv": "One prompt string; for spreadsheets.",
}


def _conversation_note(manifest: dict) -> str:
    options = manifest["options"]
    if manifest["format"] not in FLAT_FORMATS:
        return ""
    if options.get("conversation") == "transcript":
        return (
            "Conversations: every prompt is written as a plain transcript: each turn as "
            '"System: …", "User: …" or "Assistant: …", a blank line between turns, ending '
            "with the last user turn."
        )
    return (
        "Conversations: none of the exported prompts has a system prompt or earlier turns "
        "(an export with any is refused in this format unless a transcript is chosen)."
    )


def dataset_card(manifest: dict) -> str:
    """A Hugging Face dataset card: YAML header (configs with the split files), counts per
    split, agreement, label distribution, options and generation models."""
    data_files = [
        f for f in manifest["files"] if ".provenance." not in f["name"]
        and f["name"].split(".")[-1] in ("jsonl", "csv", "parquet")
        and f["name"] != "judgments.jsonl"
    ]  # fmt: skip
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for entry in data_files:
        lines += [f"  - split: {entry['name'].split('.')[0]}", f"    path: {entry['name']}"]
    if not data_files:
        lines += ["  - split: train", "    path: judgments.jsonl"]
    lines += ["tags:", "- dpo", "- preference", "- chosen", "---", ""]
    project = manifest["project"]
    lines += [
        f"# {project['name']}: preference data ({manifest['format']})",
        "",
        f"Exported by Chosen from project {project['id']}.",
        "",
        "| split | rows |",
        "|---|---|",
    ]
    lines += [f"| {split} | {n} |" for split, n in manifest["counts"].items()]
    lines += ["", f"Mean agreement of the exported pairs: {manifest['mean_agreement']}", ""]
    lines += ["## Label distribution (all judgments)", "", "| label | judgments |", "|---|---|"]
    lines += [f"| {label or '(none)'} | {n} |" for label, n in manifest["labels"].items()]
    lines += ["", "## Options", "", "```json", dumps(manifest["options"]), "```", ""]
    models = ", ".join(manifest["models"]) or "none (imported or written by people)"
    lines += [f"Generation models: {models}", ""]
    lines += _format_section(manifest, data_files)
    lines += ["## Files", "", "| file | rows | sha256 |", "|---|---|---|"]
    lines += [f"| {e['name']} | {e['rows']} | `{e['sha256']}` |" for e in manifest["files"]]
    return "\n".join(lines) + "\n"


def _format_section(manifest: dict, data_files: list[dict]) -> list[str]:
    """What the format keeps and transforms, and how its consumer loads the files."""
    fmt, options = manifest["format"], manifest["options"]
    note = FORMAT_NOTES.get(fmt)
    if note is None:
        return []
    lines = ["## What the files keep", "", note, ""]
    conversation = _conversation_note(manifest)
    if conversation:
        lines += [conversation, ""]
    if fmt == "csv":
        lines += [
            "CSV cells as stored, no escaping."
            if options.get("csv_raw")
            else "CSV cells that a spreadsheet would run as a formula (a leading =, +, -, @, "
            "tab or carriage return) start with an added `'`; export with csv_raw for the "
            "cells exactly as stored.",
            "",
        ]
    conflicts = manifest.get("kto_conflicts")
    if conflicts:
        lines += [
            "Completions chosen in some pairs and rejected in others: "
            f"{conflicts['labelled_by_majority']} labelled by most of their pairs, "
            f"{conflicts['left_out']} left out (a tie, or the unanimous policy).",
            "",
        ]
    if fmt == "axolotl":
        names = [e["name"] for e in data_files]
        yaml_lines = ["rl: dpo", "chat_template: chatml  # or your model's: tokenizer_default"]
        yaml_lines += ["datasets:", AXOLOTL_DATASET.format(name="train.jsonl")]
        if "validation.jsonl" in names:
            yaml_lines += ["val_set_size: 0  # the validation file below is the evaluation set"]
            yaml_lines += ["test_datasets:", AXOLOTL_DATASET.format(name="validation.jsonl")]
        lines += [
            "## Axolotl",
            "",
            "Run Axolotl from this folder: it reads a local `path` relative to its working "
            "directory.",
            "",
            "```yaml",
            *yaml_lines,
            "```",
            "",
        ]
    return lines


# --- export jobs -------------------------------------------------------------------------


def folder_of(export) -> Path:
    """MEDIA_ROOT/exports/<organization>/<project>/<export>: one folder per export, named by
    ids only, so no user string reaches a path."""
    from django.conf import settings

    return (
        Path(settings.MEDIA_ROOT)
        / "exports"
        / str(int(export.organization_id))
        / str(int(export.project_id))
        / str(int(export.pk))
    )


def options_from(data: dict) -> Options:
    """Options from a request's or a form's values: unknown keys, and values of the wrong
    type, are refused with a ValueError that names the option."""
    from dataclasses import fields

    if not isinstance(data, dict):
        raise ValueError("options must be an object")
    known = {f.name: f for f in fields(Options)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(unknown)}")
    values = {name: _option_value(name, value, known[name].default) for name, value in data.items()}
    options = Options(**values)
    if options.problems():
        raise ValueError("; ".join(options.problems()))
    return options


def _option_value(name: str, value, default):
    """``value`` checked against the option's type, which its default shows (None: an
    optional number; a tuple: a list of the same kind as its first element)."""

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if isinstance(default, tuple):
        kind = "numbers" if name == "ratios" else "strings"
        ok = isinstance(value, list | tuple) and all(
            number(v) if kind == "numbers" else isinstance(v, str) for v in value
        )
        if not ok:
            raise ValueError(f"{name} must be a list of {kind}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
    elif isinstance(default, int) and not isinstance(default, bool):
        if not (isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f"{name} must be a whole number")
    elif default is None or isinstance(default, float):
        if not (number(value) or (default is None and value is None)):
            raise ValueError(f"{name} must be a number")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def conversation_problem(project: Project, fmt: str, options: Options) -> str:
    """Why ``fmt`` cannot be exported as asked: a flat format (one prompt string) told to
    refuse conversations, in a project with judged prompts that hold one. Empty if none."""
    if fmt not in FLAT_FORMATS or options.conversation != "refuse":
        return ""
    judged = Judgment.objects.filter(item__prompt=OuterRef("pk"))
    turns = (
        Prompt.objects.filter(project=project, messages__isnull=False)
        .filter(Exists(judged))
        .values_list("messages", flat=True)
    )
    count = sum(1 for m in turns.iterator() if isinstance(m, list) and len(m) > 1)
    return conversation_refusal(fmt, count) if count else ""


def request_export(project: Project, fmt: str, options: Options, created_by=None):
    """Queue an export job; ValueError (nothing queued) for a format or options that cannot
    be exported, e.g. conversations a flat format was told to refuse."""
    from exports.jobs import run_export
    from exports.models import Export

    if fmt not in ALL_FORMATS:
        raise ValueError(f"format must be one of {', '.join(ALL_FORMATS)}")
    refusal = conversation_problem(project, fmt, options)
    if refusal:
        raise ValueError(refusal)
    export = Export.objects.create(
        organization=project.organization,
        project=project,
        created_by=created_by,
        format=fmt,
        options=asdict(options),
    )
    run_export.delay_on_commit(project.organization_id, export.pk)
    return export


def run_export(export_id: int):
    import logging

    from django.utils import timezone

    from exports.models import Export

    export = Export.objects.select_related("project").get(pk=export_id)
    if export.finished:
        return export
    export.status, export.started_at = Export.Status.RUNNING, timezone.now()
    export.save(update_fields=["status", "started_at"])
    folder = folder_of(export)
    shutil.rmtree(folder, ignore_errors=True)  # a retried job starts clean
    try:
        # A savepoint: a query the database refuses must not abort the transaction that
        # the failure is then written in (the caller may hold one).
        with transaction.atomic():
            manifest = export_to_folder(
                export.project, export.format, folder, options_from(export.options)
            )
        export.counts, export.files = manifest["counts"], manifest["files"]
        export.status = Export.Status.SUCCEEDED
    except ConversationRefused as refused:  # the lead's own choice: their words, not a fault
        export.status, export.error = Export.Status.FAILED, str(refused)
    except Exception as error:
        logging.getLogger(__name__).exception("export %s failed", export.pk)
        export.status = Export.Status.FAILED
        export.error = Export.reason_for(error, "The export could not be written")
    export.finished_at = timezone.now()
    export.save(update_fields=["counts", "files", "status", "error", "finished_at"])
    return export


def export_file(export, name: str) -> Path:
    """The path of one of the export's files, if ``name`` is exactly one of them (a name
    from the manifest, never a path): FileNotFoundError otherwise."""
    names = {entry["name"] for entry in export.files} | {"manifest.json"}
    if name not in names or "/" in name or "\\" in name or name.startswith("."):
        raise FileNotFoundError(name)
    path = folder_of(export) / name
    if not path.is_file():
        raise FileNotFoundError(name)
    return path
