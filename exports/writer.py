"""Writing an export into a folder: the split files of one format with their provenance,
a manifest with counts, parameters and sha256 checksums, and the dataset card
(exports.card). Or all raw judgments as JSONL (format ``judgments``). No job, no
request: exports.services runs this as an Export job; the export_dataset command calls
it directly."""

import hashlib
import shutil
import tempfile
from pathlib import Path

from django.db.models import Count, Exists, OuterRef

from annotation.models import Judgment
from exports.card import dataset_card
from exports.formats import (
    FLAT_FORMATS,
    FORMATS,
    ConversationRefused,
    SplitWriter,
    conversation_refusal,
    dumps,
    llama_factory_info,
)
from exports.pairs import (
    Options,
    aspects_of,
    check,
    exported_judge_decisions,
    exported_signal_pairs,
    extract,
    judgments_for_pairs,
    options_record,
    prompts_with_judgments,
)
from exports.preview import Tally
from tasks.models import Project, Prompt

ALL_FORMATS = (*FORMATS, "judgments")


def export_to_folder(project: Project, fmt: str, folder: Path, options: Options) -> dict:
    """Write the export into ``folder`` (created; must be empty or absent) and return its
    manifest. Files are written in a temporary folder beside it (``partial_folders``) and
    moved in at the end, so a failure leaves nothing half-written, and a worker killed
    mid-way leaves only that temporary folder."""
    if fmt not in ALL_FORMATS:
        raise ValueError(f"format must be one of {', '.join(ALL_FORMATS)}")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty")
    if fmt != "judgments":
        check(project, options)  # before any folder is made
    refusal = conversation_problem(project, fmt, options)
    if refusal:
        raise ConversationRefused(refusal)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        manifest = _write(project, fmt, work, options)
        if folder.exists():
            folder.rmdir()
        work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return manifest


def partial_folders(folder: Path) -> list[Path]:
    """The temporary folders ``export_to_folder`` left beside ``folder`` when its process
    was killed while writing."""
    folder = Path(folder)
    return sorted(folder.parent.glob(f".{folder.name}.partial-*"))


def _write(project: Project, fmt: str, work: Path, options: Options) -> dict:
    models: list[str] = []
    mean_agreement, kto_conflicts, sources, scoring = None, None, {}, {}
    if fmt == "judgments":
        files, counts = [_raw_judgments(project, work / "judgments.jsonl")], {}
        counts = {"judgments": files[0]["rows"]}
    else:
        scored = options.with_scores
        writer = SplitWriter(work, fmt, options, aspects_of(project) if scored else None)
        tally = Tally()
        try:
            for pair in extract(project, options, positions=scored):
                writer.add(pair)
                tally.add(pair)
        finally:
            files = writer.close()
        if scored:  # the card states the rule and what the preview would have shown
            figures = tally.figures(prompts_with_judgments(project, options))
            scoring = {"score_columns": writer.scores, "preview": figures}
        counts, models = dict(sorted(writer.counts.items())), sorted(writer.models)
        if writer.kto is not None:
            kto_conflicts = writer.kto.conflicts
        if writer.judged:
            mean_agreement = round(writer.agreement_sum / writer.judged, 4)
        sources = dict(sorted(writer.sources.items()))
        if fmt == "llama-factory":
            info = llama_factory_info(f"chosen_{project.pk}", files)
            files.append(_text_file(work / "dataset_info.json", dumps(info) + "\n"))
    manifest = {
        "project": {"id": project.pk, "name": project.name},
        "format": fmt,
        "options": options_record(options),
        "counts": counts,
        "mean_agreement": mean_agreement,
        "sources": sources,
        "models": models,
        "labels": _labels(project),
        **({"kto_conflicts": kto_conflicts} if kto_conflicts is not None else {}),
        **scoring,
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


def conversation_problem(project: Project, fmt: str, options: Options) -> str:
    """Why ``fmt`` cannot be exported as asked: a flat format (one prompt string) told to
    refuse conversations, in a project with judged prompts that hold one. Empty if none."""
    if fmt not in FLAT_FORMATS or options.conversation != "refuse":
        return ""
    judged = judgments_for_pairs(project).filter(item__prompt=OuterRef("pk"))
    signalled = exported_signal_pairs(project).filter(prompt=OuterRef("pk"))
    decided = exported_judge_decisions(project).filter(item__prompt=OuterRef("pk"))
    turns = (
        Prompt.objects.filter(project=project, messages__isnull=False)
        .filter(Exists(judged) | Exists(signalled) | Exists(decided))
        .values_list("messages", flat=True)
    )
    count = sum(1 for m in turns.iterator() if isinstance(m, list) and len(m) > 1)
    return conversation_refusal(fmt, count) if count else ""
