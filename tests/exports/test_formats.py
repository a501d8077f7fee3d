"""Every export format opened by its consumer's own loader: Hugging Face datasets and TRL's
dataset-format helpers (trl.data_utils), LLaMA-Factory's dataset_info.json, the fields
Axolotl's chatml.intel type reads, the csv module, and the dataset card's YAML."""

import json
import os
from collections import Counter

import pytest
import yaml
from django_scopes import scope

from exports.pairs import Options
from exports.services import export_to_folder
from tests.exports.test_pairs import voted, with_system_prompt  # noqa: F401 (fixture)

# Nothing may reach the network: the loaders work from local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytestmark = pytest.mark.django_db


def export(project, fmt, folder, **options):
    with scope(organization=project.organization):
        return export_to_folder(
            project, fmt, folder, Options(policy="all", ratios=(1.0,), **options)
        )


def load(kind, path, tmp_path):
    from datasets import load_dataset

    return load_dataset(kind, data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))


def tokenizer():
    """A tiny tokenizer with a chat template, built offline (no model download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]")
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return fast


def test_trl_standard_and_conversational_pass_trls_helpers(voted, tmp_path):  # noqa: F811
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    export(voted.project, "trl", tmp_path / "std")
    with_system_prompt(voted, "Be terse.")
    export(voted.project, "trl-conversational", tmp_path / "conv")
    standard = load("json", tmp_path / "std" / "train.jsonl", tmp_path)
    assert standard.column_names == ["chosen", "prompt", "rejected"] and len(standard) == 7
    assert not is_conversational(standard[0])
    assert maybe_apply_chat_template(standard[0], tokenizer()) == standard[0]

    conversational = load("json", tmp_path / "conv" / "train.jsonl", tmp_path)
    assert len(conversational) == 7
    first = conversational[0]
    assert is_conversational(first)
    applied = maybe_apply_chat_template(first, tokenizer())
    # TRL's template split: the prompt ends where the assistant turn begins
    assert applied["prompt"].endswith("<|assistant|>") and applied["chosen"].endswith("<|end|>\n")
    systems = [row for row in conversational if row["prompt"][0]["role"] == "system"]
    assert systems and systems[0]["prompt"][0]["content"] == "Be terse."


def test_kto_rows_match_trls_own_unpairing(voted, tmp_path):  # noqa: F811
    from trl.data_utils import maybe_unpair_preference_dataset

    export(voted.project, "kto", tmp_path / "kto")
    export(voted.project, "trl", tmp_path / "std")
    kto = load("json", tmp_path / "kto" / "train.jsonl", tmp_path)
    unpaired = maybe_unpair_preference_dataset(
        load("json", tmp_path / "std" / "train.jsonl", tmp_path)
    )
    assert (
        sorted(kto.column_names)
        == sorted(unpaired.column_names)
        == ["completion", "label", "prompt"]
    )
    assert kto.features["label"].dtype == "bool"
    # both-bad item 3: both its candidates are undesirable completions
    bad = {row["completion"] for row in kto if row["prompt"] == voted.items[3][0].prompt.text}
    assert bad == {"first answer to prompt 3", "second answer to prompt 3"}
    assert not any(row["label"] for row in kto if row["completion"] in bad)
    # Ours is TRL's unpairing with each completion of a prompt once: its label is the one
    # most of its pairs give (item 1: "first" won once and lost twice under policy "all").
    theirs = Counter((r["prompt"], r["completion"], r["label"]) for r in unpaired)
    ours = [(r["prompt"], r["completion"]) for r in kto]
    assert len(ours) == len(set(ours))  # no repeated row
    for row in kto:
        if row["completion"] in bad:
            continue
        key = (row["prompt"], row["completion"])
        assert theirs[(*key, row["label"])] > theirs[(*key, not row["label"])]


def test_axolotl_records_have_the_fields_chat_template_default_reads(voted, tmp_path):  # noqa: F811
    manifest = export(voted.project, "axolotl", tmp_path / "ax")
    rows = load("json", tmp_path / "ax" / "train.jsonl", tmp_path)
    assert sorted(rows.column_names) == ["chosen", "messages", "rejected"]
    assert rows[0]["messages"][-1]["role"] == "user"
    assert rows[0]["chosen"]["role"] == rows[0]["rejected"]["role"] == "assistant"
    card = (tmp_path / "ax" / "README.md").read_text()
    assert "type: chat_template.default" in card and "rl: dpo" in card
    assert manifest["counts"] == {"train": 7}


def test_llama_factory_dataset_info_describes_the_files(voted, tmp_path):  # noqa: F811
    export(voted.project, "llama-factory", tmp_path / "lf")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    [(name, entry)] = info.items()
    assert name.endswith("_train") and entry["ranking"] is True
    rows = load("json", tmp_path / "lf" / entry["file_name"], tmp_path)
    assert set(entry["columns"].values()) <= set(rows.column_names)
    assert rows[0]["instruction"].startswith("Question") and rows[0]["input"] == ""


def test_parquet_loads_with_datasets(voted, tmp_path):  # noqa: F811
    manifest = export(voted.project, "parquet", tmp_path / "pq")
    rows = load("parquet", tmp_path / "pq" / "train.parquet", tmp_path)
    assert len(rows) == manifest["counts"]["train"] == 7
    assert rows.column_names == [
        "prompt",
        "prompt_messages",
        "chosen",
        "rejected",
        "agreement",
        "dimension",
        "source",
        "confidence",
    ]
    assert (rows[0]["source"], rows[0]["confidence"]) == ("human", rows[0]["agreement"])
    assert rows[0]["prompt_messages"] == [{"role": "user", "content": rows[0]["prompt"]}]
    again = export(voted.project, "parquet", tmp_path / "pq2")
    assert again["files"] == manifest["files"]  # same bytes: same sha256


def test_raw_judgments_and_the_dataset_card(voted, tmp_path):  # noqa: F811
    manifest = export(voted.project, "judgments", tmp_path / "raw")
    lines = (tmp_path / "raw" / "judgments.jsonl").read_text().splitlines()
    assert len(lines) == manifest["counts"]["judgments"] == 11
    assert {"annotator", "outcome", "chosen_id", "display_order", "reasoning"} <= set(
        json.loads(lines[0])
    )
    manifest = export(voted.project, "trl", tmp_path / "card", exclude_truncated=True)
    card = (tmp_path / "card" / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "train.jsonl"}]
    assert "| train | 7 |" in card and '"exclude_truncated":true' in card
    assert "| A is better |" in card  # the label distribution
