"""Exports keep every turn: a project whose prompts are conversations (a system prompt,
earlier user and assistant turns) exported in every format, read back as each consumer
reads it. Formats with a place for the conversation keep it whole; the one-string formats
(trl, kto, csv) refuse it, as the lead chose, or write the documented transcript."""

import csv
import json
import os
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from exports.formats import ConversationRefused
from exports.models import Export
from exports.pairs import Options
from exports.services import export_to_folder
from tests.exports.test_pairs import voted  # noqa: F401 (fixture)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytestmark = pytest.mark.django_db

SYSTEM = "You are a veterinary assistant who answers briefly."
EARLIER_USER = "My cat Tigger stopped eating yesterday."
EARLIER_ASSISTANT = "Has Tigger been drinking water and using the litter box?"


def with_conversation(data, n: int = 0) -> str:
    """Item n's prompt becomes a conversation: system, user, assistant, then its own text
    as the last user turn. Returns that last turn."""
    with scopes_disabled():
        prompt = data.items[n][0].prompt
        prompt.messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": EARLIER_USER},
            {"role": "assistant", "content": EARLIER_ASSISTANT},
            {"role": "user", "content": prompt.text},
        ]
        prompt.save()
        return prompt.text


def export(project, fmt, folder, policy="unanimous", **options):
    with scope(organization=project.organization):
        return export_to_folder(
            project, fmt, folder, Options(policy=policy, ratios=(1.0,), **options)
        )


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trl_conversational_keeps_every_turn(voted, tmp_path):  # noqa: F811
    last = with_conversation(voted)
    export(voted.project, "trl-conversational", tmp_path / "x")
    [record] = jsonl(tmp_path / "x" / "train.jsonl")
    assert record["prompt"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": EARLIER_USER},
        {"role": "assistant", "content": EARLIER_ASSISTANT},
        {"role": "user", "content": last},
    ]


def test_llama_factory_keeps_system_history_and_last_turn(voted, tmp_path):  # noqa: F811
    last = with_conversation(voted)
    export(voted.project, "llama-factory", tmp_path / "x")
    [record] = jsonl(tmp_path / "x" / "train.jsonl")
    assert record["system"] == SYSTEM
    assert record["history"] == [[EARLIER_USER, EARLIER_ASSISTANT]]
    assert record["instruction"] == last


def test_axolotl_keeps_the_whole_conversation(voted, tmp_path):  # noqa: F811
    last = with_conversation(voted)
    export(voted.project, "axolotl", tmp_path / "x")
    [record] = jsonl(tmp_path / "x" / "train.jsonl")
    assert [m["content"] for m in record["messages"]] == [
        SYSTEM,
        EARLIER_USER,
        EARLIER_ASSISTANT,
        last,
    ]
    assert record["chosen"] == {"role": "assistant", "content": "first answer to prompt 0"}


def test_parquet_keeps_the_conversation_beside_the_prompt(voted, tmp_path):  # noqa: F811
    import pyarrow.parquet as pq

    last = with_conversation(voted)
    export(voted.project, "parquet", tmp_path / "x")
    [row] = pq.read_table(tmp_path / "x" / "train.parquet").to_pylist()
    assert row["prompt"] == last
    assert [m["content"] for m in row["prompt_messages"]] == [
        SYSTEM,
        EARLIER_USER,
        EARLIER_ASSISTANT,
        last,
    ]


@pytest.mark.parametrize("fmt", ["trl", "kto", "csv"])
def test_one_string_formats_refuse_a_conversation_and_write_nothing(voted, tmp_path, fmt):  # noqa: F811
    with_conversation(voted)
    with pytest.raises(ConversationRefused) as refused:
        export(voted.project, fmt, tmp_path / "x")
    message = str(refused.value)
    assert message.startswith("1 judged prompt(s) hold a conversation")
    assert "trl-conversational, llama-factory, axolotl, parquet" in message
    assert not (tmp_path / "x").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".export-")] == []


def read_prompts(fmt: str, folder: Path) -> list[str]:
    if fmt == "csv":
        with (folder / "train.csv").open(newline="") as handle:
            return [row[0] for row in list(csv.reader(handle))[1:]]
    return [record["prompt"] for record in jsonl(folder / "train.jsonl")]


@pytest.mark.parametrize("fmt", ["trl", "kto", "csv"])
def test_one_string_formats_write_the_transcript_when_chosen(voted, tmp_path, fmt):  # noqa: F811
    last = with_conversation(voted)
    manifest = export(voted.project, fmt, tmp_path / "x", conversation="transcript")
    expected = (
        f"System: {SYSTEM}\n\nUser: {EARLIER_USER}\n\nAssistant: {EARLIER_ASSISTANT}\n\n"
        f"User: {last}"
    )
    prompts = read_prompts(fmt, tmp_path / "x")
    assert expected in prompts
    # one rule for every prompt, single turns too ("User: …"; kto adds the both-bad item 3)
    assert all(p == expected or p.startswith("User: Question") for p in prompts)
    card = (tmp_path / "x" / "README.md").read_text()
    assert "every prompt is written as a plain transcript" in card
    assert manifest["options"]["conversation"] == "transcript"


def test_the_api_the_page_and_the_command_refuse_with_the_reason(voted, acme, as_user, tmp_path):  # noqa: F811
    with_conversation(voted)
    client = as_user(acme.lead)
    project = voted.project
    response = client.post(
        f"/api/v1/projects/{project.pk}/exports",
        {"format": "trl"},
        content_type="application/json",
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert "1 judged prompt(s) hold a conversation" in error["message"]

    page = client.post(reverse("exports:page", args=[project.pk]), {"format": "kto"})
    assert page.status_code == 400
    assert "1 judged prompt(s) hold a conversation" in page.content.decode()
    with scopes_disabled():
        assert not Export.objects.filter(project=project).exists()  # nothing queued

    ref = f"{acme.organization.slug}/{project.pk}"
    with pytest.raises(CommandError, match="hold a conversation"):
        call_command("export_dataset", ref, "--format", "csv", "--out", str(tmp_path / "c"))
    call_command(
        "export_dataset",
        ref,
        "--format",
        "csv",
        "--out",
        str(tmp_path / "c"),
        "--conversation",
        "transcript",
        "--split",  # every prompt in train.csv: where one lands depends on its database id
        "1",
    )
    prompts = read_prompts("csv", tmp_path / "c")
    assert sum(p.startswith("System: ") for p in prompts) == 1
    assert all(p.startswith(("System: ", "User: ")) for p in prompts)


def test_csv_cells_are_escaped_for_spreadsheets_unless_raw_is_chosen(voted, tmp_path):  # noqa: F811
    with scopes_disabled():
        prompt = voted.items[0][0].prompt
        prompt.text = "=1+1 and @mention"
        prompt.save()
    export(voted.project, "csv", tmp_path / "safe")
    export(voted.project, "csv", tmp_path / "raw", csv_raw=True)
    assert read_prompts("csv", tmp_path / "safe") == ["'=1+1 and @mention"]
    assert read_prompts("csv", tmp_path / "raw") == ["=1+1 and @mention"]
    assert "start with an added `'`" in (tmp_path / "safe" / "README.md").read_text()
    assert "CSV cells as stored" in (tmp_path / "raw" / "README.md").read_text()


def test_kto_has_one_row_per_completion_and_the_card_counts_the_conflicts(voted, tmp_path):  # noqa: F811
    # Policy "all": item 1's first answer wins once and loses twice, the second the reverse.
    manifest = export(voted.project, "kto", tmp_path / "all", policy="all")
    rows = jsonl(tmp_path / "all" / "train.jsonl")
    keys = [(r["prompt"], r["completion"]) for r in rows]
    assert len(keys) == len(set(keys))
    item1 = {r["completion"]: r["label"] for r in rows if "prompt 1" in r["completion"]}
    assert item1 == {"first answer to prompt 1": False, "second answer to prompt 1": True}
    assert manifest["kto_conflicts"] == {"labelled_by_majority": 2, "left_out": 0}
    assert "2 labelled by most of their pairs" in (tmp_path / "all" / "README.md").read_text()


def test_kto_leaves_a_tied_completion_out():
    """A completion chosen as often as it is rejected has no label to give."""
    from exports.formats import _KtoLabels

    kto = _KtoLabels("majority")

    class Prompt:
        pk = 1

    class Pair:
        prompt, split = Prompt(), "train"

    records = [
        {"prompt": "p", "completion": "b", "label": True},
        {"prompt": "p", "completion": "c", "label": False},
        {"prompt": "p", "completion": "a", "label": True},
        {"prompt": "p", "completion": "b", "label": False},
    ]
    assert kto.add(Pair(), records) == []
    [(split, rows)] = kto.flush()
    assert rows == [
        {"prompt": "p", "completion": "c", "label": False},
        {"prompt": "p", "completion": "a", "label": True},
    ]
    assert kto.conflicts == {"labelled_by_majority": 0, "left_out": 1}


# --- the consumers' own rules ------------------------------------------------------------


def axolotl_datasets(folder: Path) -> dict[str, list]:
    """The card's Axolotl YAML, loaded as Axolotl loads a DPO config's datasets
    (src/axolotl/utils/data/shared.py and rl.py): a `path` that exists is a local dataset,
    relative to the working directory (the card says to run from the export's folder); a
    file is read with `ds_type` (else by its extension, else json) and is its "train"
    split; `type: chat_template.default` reads `field_messages` / `field_chosen` /
    `field_rejected` (defaults messages / chosen / rejected) and maps roles through
    `roles`. Returns the records of `datasets` and `test_datasets` as the strategy sees them."""
    from datasets import load_dataset

    card = (folder / "README.md").read_text()
    config = yaml.safe_load(card.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert config["rl"] == "dpo" and config.get("chat_template")
    if config.get("test_datasets"):
        # Axolotl refuses a non-zero val_set_size beside test_datasets.
        assert not config.get("val_set_size")
    loaded = {}
    for section in ("datasets", "test_datasets"):
        records = []
        for entry in config.get(section) or []:
            path = folder / entry["path"]
            assert path.is_file(), f"{entry['path']} names no file of the export"
            kind = entry.get("ds_type") or "json"
            assert kind == "json"
            rows = load_dataset(
                kind, data_files=str(path), split="train", cache_dir=str(folder / ".hf")
            )
            assert entry["type"] == "chat_template.default"
            messages = entry.get("field_messages", "messages")
            chosen = entry.get("field_chosen", "chosen")
            rejected = entry.get("field_rejected", "rejected")
            roles = {r for names in entry.get("roles", {}).values() for r in names}
            for row in rows:
                assert {m["role"] for m in row[messages]} <= roles
                assert row[chosen]["role"] in roles and row[rejected]["role"] in roles
                records.append(
                    {"messages": row[messages], "chosen": row[chosen], "rejected": row[rejected]}
                )
        loaded[section] = records
    return loaded


def test_the_axolotl_yaml_of_the_card_loads_train_and_validation(voted, tmp_path):  # noqa: F811
    last = with_conversation(voted)
    with scope(organization=voted.project.organization):
        manifest = export_to_folder(
            voted.project,
            "axolotl",
            tmp_path / "ax",
            # Three of the four prompts give pairs under "all": both halves get one.
            Options(policy="all", ratios=(0.5, 0.5)),
        )
    loaded = axolotl_datasets(tmp_path / "ax")
    assert len(loaded["datasets"]) == manifest["counts"]["train"]
    assert len(loaded["test_datasets"]) == manifest["counts"]["validation"]
    everything = loaded["datasets"] + loaded["test_datasets"]
    conversation = next(r for r in everything if r["messages"][-1]["content"] == last)
    assert [m["content"] for m in conversation["messages"][:3]] == [
        SYSTEM,
        EARLIER_USER,
        EARLIER_ASSISTANT,
    ]


def word_tokenizer(texts: list[str]):
    """A real tokenizer built offline from the export's own words, with a ChatML template:
    punctuation is split off, so a turn's tokens are the same inside the rendered prompt."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    words.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return fast


def contains(tokens: list[int], part: list[int]) -> bool:
    return any(tokens[i : i + len(part)] == part for i in range(len(tokens) - len(part) + 1))


def test_trl_tokenizes_every_earlier_turn_into_the_prompt(voted, tmp_path):  # noqa: F811
    from trl.data_utils import apply_chat_template, is_conversational

    last = with_conversation(voted)
    export(voted.project, "trl-conversational", tmp_path / "x")
    [record] = jsonl(tmp_path / "x" / "train.jsonl")
    assert is_conversational(record)
    texts = [m["content"] for m in record["prompt"]] + [record["chosen"][0]["content"]]
    tokenizer = word_tokenizer([*texts, "<|im_start|> <|im_end|> system user assistant"])
    applied = apply_chat_template(record, tokenizer)
    prompt_ids = tokenizer(applied["prompt"])["input_ids"]
    assert tokenizer.unk_token_id not in prompt_ids
    for turn in (SYSTEM, EARLIER_USER, EARLIER_ASSISTANT, last):
        assert contains(prompt_ids, tokenizer(turn)["input_ids"]), turn
    # the completion is not in the prompt: TRL splits at the assistant header
    assert "first answer to prompt 0" not in applied["prompt"]
    assert applied["chosen"].startswith("first answer to prompt 0")
