"""The dataset card written beside every export: a README.md with a Hugging Face YAML
header (configs naming the split files), counts, agreement, labels, options, models, and
how to load the files in TRL, Axolotl or LLaMA-Factory."""

from exports.formats import FLAT_FORMATS, dumps
from tasks.models import Rule

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
    lines += _sources_section(manifest.get("sources") or {})
    lines += _binarization_section(manifest)
    lines += ["## Label distribution (all judgments)", "", "| label | judgments |", "|---|---|"]
    lines += [f"| {label or '(none)'} | {n} |" for label, n in manifest["labels"].items()]
    lines += ["", "## Options", "", "```json", dumps(manifest["options"]), "```", ""]
    models = ", ".join(manifest["models"]) or "none (imported or written by people)"
    lines += [f"Generation models: {models}", ""]
    lines += _format_section(manifest, data_files)
    lines += ["## Files", "", "| file | rows | sha256 |", "|---|---|---|"]
    lines += [f"| {e['name']} | {e['rows']} | `{e['sha256']}` |" for e in manifest["files"]]
    return "\n".join(lines) + "\n"


RULE_NOTES = {
    "best_vs_others": "the best-scored candidate of a prompt vs every other",
    "best_vs_worst": "the best-scored candidate of a prompt vs the worst",
    "best_vs_random": "the best-scored candidate of a prompt vs one lower one drawn by the seed",
    "all_pairs": "every ordered pair of a prompt's candidates by score",
}


def _binarization_section(manifest: dict) -> list[str]:
    """The binarization rule and its settings, the score columns and the preview's figures
    (only for an export with score columns: exports.binarize)."""
    figures = manifest.get("preview")
    if figures is None:
        return []
    options = manifest["options"]
    rule = options.get("binarize", "")
    lines = ["## Binarization and margins", ""]
    if rule:
        scores = options.get("scores_from", "order")
        made = (
            "the judgments' order as a win rate, (wins + ½ ties) / comparisons"
            if scores == "order"
            else "the rubric's aspects, weighted mean with weights "
            + (options.get("aspect_weights") or "all equal")
        )
        lines += [
            f"- Rule: `{rule}`: {RULE_NOTES[rule]}.",
            f"- Score per candidate: {made}.",
            f"- Minimum margin: {options.get('min_margin', 0.0)}; equal scores "
            + ("kept as pairs (margin 0)." if options.get("keep_ties") else "make no pair."),
            f"- At most {options.get('max_pairs_per_prompt') or 'any number of'} pair(s) per "
            "prompt (the largest margins; equal ones in the seed's order).",
            "- margin = score_chosen − score_rejected.",
        ]
    else:
        lines += [
            "- Pairs as the judgments state them; margin = the mean strength (1–3) of the "
            "judgments behind a pair that carry one, else the difference of the two sides' "
            "rubric scores, else 0 (TRL's plain loss). Each provenance line says which "
            "(margin_from).",
        ]
    columns = ", ".join(f"`{name}`" for name in manifest.get("score_columns") or [])
    if columns:
        lines += [f"- Score columns: {columns} (null: no score for that side)."]
    length = figures["length_difference"]
    lines += [
        "",
        "| preview | value |",
        "|---|---|",
        f"| pairs | {figures['pairs']} |",
        f"| prompts kept | {figures['prompts_kept']} of {figures['prompts']} "
        f"({figures['prompts_kept_share']}) |",
        f"| chosen − rejected length, mean (characters) | {length['mean']} |",
        f"| chosen − rejected length, median (characters) | {length['median']} |",
        f"| chosen shown first (share, {figures['pairs_with_display']} pairs) "
        f"| {figures['chosen_shown_first']} |",
        "",
    ]
    return lines


# What each source is: the pair builder's rules, or people.
SOURCE_NOTES = {
    "human": "Judged by annotators",
    **dict(Rule.choices),
    "judge": "Decided by the project's AI judge (routed away from people; the lead let exports "
    "take them)",
}


def _sources_section(sources: dict) -> list[str]:
    """Exported pairs per source: people, or the pair builder's rule that made them."""
    if not sources:
        return []
    lines = ["## Pairs per source", "", "| source | pairs | what it is |", "|---|---|---|"]
    lines += [f"| {name} | {n} | {SOURCE_NOTES.get(name, '')} |" for name, n in sources.items()]
    lines += [
        "",
        "Each record's source and confidence are in its provenance line; a machine-made pair "
        "an expert flipped is exported reversed; a judge-decided pair's confidence is the "
        "judge's margin over both orders.",
        "",
    ]
    return lines


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
