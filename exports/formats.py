"""Dataset formats: how one preference pair becomes a record of each consumer's format, and
writing a split's records to files, streamed and deterministic (sorted keys, fixed
separators, "\\n" line ends), with the sha256 of every file.

- ``trl``: TRL's standard preference format, {"prompt", "chosen", "rejected"} strings.
- ``trl-conversational``: TRL's conversational preference format: "prompt" is the message
  list (system prompt and earlier turns kept), "chosen" / "rejected" one assistant message.
- ``kto``: TRL's unpaired preference format {"prompt", "completion", "label"}: a pair gives
  its chosen (true) and rejected (false) completions, a both-bad item each of its
  candidates (false); each completion once per item.
- ``axolotl``: the fields Axolotl's ``chatml.intel`` DPO type reads: system, question,
  chosen, rejected (the dataset card has the YAML to use).
- ``llama-factory``: LLaMA-Factory's ranking data in the alpaca layout (instruction, input,
  chosen, rejected, system, history) and its ``dataset_info.json``.
- ``csv``: prompt, better_response, weaker_response, diagnosis, scores, dimension, agreement.
- ``parquet``: the TRL standard columns plus agreement and dimension, in Parquet.
Beside every format: ``<split>.provenance.jsonl``, one line per record's pair with its ids,
models, parameters, annotators, agreement, answers, rubric scores and reasoning.
"""

import csv
import hashlib
import io
import json
from pathlib import Path

from tasks.csvsafe import spreadsheet_cell

FORMATS = ("trl", "trl-conversational", "kto", "axolotl", "llama-factory", "csv", "parquet")
CSV_HEADER = [
    "prompt",
    "better_response",
    "weaker_response",
    "diagnosis",
    "scores",
    "dimension",
    "agreement",
]
PARQUET_ROWS = 10_000  # rows per Parquet row group (and per write)


_ENCODE = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


def dumps(record) -> str:
    """Compact JSON with sorted keys: the same data always gives the same bytes."""
    return _ENCODE(record)


def messages_of(prompt) -> list[dict]:
    """The prompt as chat messages: the imported conversation, or one user turn."""
    if prompt.messages:
        return [{"role": m["role"], "content": m["content"]} for m in prompt.messages]
    return [{"role": "user", "content": prompt.text}]


def system_of(prompt) -> str:
    return "\n\n".join(m["content"] for m in prompt.messages or [] if m["role"] == "system")


def history_of(prompt) -> list[list[str]]:
    """Earlier [user, assistant] turns before the last user turn (LLaMA-Factory's history)."""
    turns = [m for m in prompt.messages or [] if m["role"] in ("user", "assistant")]
    if turns and turns[-1]["role"] == "user":
        turns = turns[:-1]
    return [
        [user["content"], assistant["content"]]
        for user, assistant in zip(turns[::2], turns[1::2], strict=False)
        if user["role"] == "user" and assistant["role"] == "assistant"
    ]


def dimension_of(pair) -> str:
    return next((v for k, v in pair.answers.items() if "dimension" in k), "")


def trl(pair) -> list[dict]:
    return [
        {"prompt": pair.prompt.text, "chosen": pair.chosen.text, "rejected": pair.rejected.text}
    ]


def trl_conversational(pair) -> list[dict]:
    return [
        {
            "prompt": messages_of(pair.prompt),
            "chosen": [{"role": "assistant", "content": pair.chosen.text}],
            "rejected": [{"role": "assistant", "content": pair.rejected.text}],
        }
    ]


def kto(pair) -> list[dict]:
    records = []
    if pair.chosen is not None:
        records.append({"prompt": pair.prompt.text, "completion": pair.chosen.text, "label": True})
    records.append({"prompt": pair.prompt.text, "completion": pair.rejected.text, "label": False})
    return records


def axolotl(pair) -> list[dict]:
    return [
        {
            "system": system_of(pair.prompt),
            "question": pair.prompt.text,
            "chosen": pair.chosen.text,
            "rejected": pair.rejected.text,
        }
    ]


def llama_factory(pair) -> list[dict]:
    return [
        {
            "instruction": pair.prompt.text,
            "input": "",
            "chosen": pair.chosen.text,
            "rejected": pair.rejected.text,
            "system": system_of(pair.prompt),
            "history": history_of(pair.prompt),
        }
    ]


def parquet(pair) -> list[dict]:
    return [
        {
            "prompt": pair.prompt.text,
            "chosen": pair.chosen.text,
            "rejected": pair.rejected.text,
            "agreement": float(pair.agreement),
            "dimension": dimension_of(pair),
        }
    ]


def csv_row(pair) -> list:
    return [
        _cell(pair.prompt.text),
        _cell(pair.chosen.text),
        _cell(pair.rejected.text),
        _cell(" | ".join(pair.reasoning)),
        dumps(pair.rubric) if pair.rubric else "",
        _cell(dimension_of(pair)),
        pair.agreement,
    ]


_cell = spreadsheet_cell  # spreadsheets must not run a prompt as a formula


def provenance(pair) -> dict:
    return {
        "split": pair.split,
        "item_id": pair.item_id,
        "prompt_id": pair.prompt.pk,
        "prompt_external_id": pair.prompt.external_id,
        "chosen": _candidate(pair.chosen) if pair.chosen is not None else None,
        "rejected": _candidate(pair.rejected),
        "agreement": pair.agreement,
        "votes": pair.votes,
        "judgments": pair.judgments,
        "annotators": pair.annotators,
        "adjudicated": pair.adjudicated,
        "answers": pair.answers,
        "rubric": pair.rubric,
        "reasoning": pair.reasoning,
    }


def _candidate(candidate) -> dict:
    return {
        "id": candidate.pk,
        "source": candidate.source,
        "model": candidate.model,
        "parameters": candidate.parameters,
        "finish_reason": candidate.finish_reason,
    }


RECORDS = {
    "trl": trl,
    "trl-conversational": trl_conversational,
    "kto": kto,
    "axolotl": axolotl,
    "llama-factory": llama_factory,
    "parquet": parquet,
}


class _File:
    def __init__(self, path: Path):
        self.path = path
        self.handle = path.open("w", encoding="utf-8", newline="")
        self.digest = hashlib.sha256()
        self.rows = 0

    def write(self, text: str) -> None:
        self.handle.write(text)
        self.digest.update(text.encode("utf-8"))


class _ParquetFile:
    """A split's Parquet file, written a row group of PARQUET_ROWS records at a time."""

    SCHEMA = (
        ("prompt", "string"),
        ("chosen", "string"),
        ("rejected", "string"),
        ("agreement", "float64"),
        ("dimension", "string"),
    )

    def __init__(self, path: Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path, self.pending, self.rows = path, [], 0
        schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in self.SCHEMA])
        self.writer = pq.ParquetWriter(path, schema)

    def add(self, records: list[dict]) -> None:
        self.pending.extend(records)
        self.rows += len(records)
        if len(self.pending) >= PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            table = pa.Table.from_pylist(self.pending, schema=self.writer.schema)
            self.writer.write_table(table)
            self.pending = []

    def close(self) -> dict:
        self._flush()
        self.writer.close()
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"name": self.path.name, "rows": self.rows, "sha256": digest}


class SplitWriter:
    """The files of one export: ``<split>.<ext>`` and ``<split>.provenance.jsonl`` for each
    split that gets a record, opened on first use, hashed as written."""

    def __init__(self, folder: Path, fmt: str):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.folder, self.fmt = Path(folder), fmt
        self.files: dict[str, _File] = {}
        self.parquet: dict[str, _ParquetFile] = {}
        self.counts: dict[str, int] = {}
        self.models: set[str] = set()
        self.agreement_sum = 0.0
        self.pairs = 0
        self._item, self._seen = None, set()

    def _file(self, name: str, header: list | None = None) -> _File:
        if name not in self.files:
            self.files[name] = _File(self.folder / name)
            if header:
                self.files[name].write(_csv_line(header))
        return self.files[name]

    def add(self, pair) -> None:
        if pair.chosen is None and self.fmt != "kto":
            return  # a both-bad completion: only the unpaired format takes it
        records = self._records(pair)
        if not records:
            return
        split = pair.split
        if self.fmt == "csv":
            target = self._file(f"{split}.csv", CSV_HEADER)
            target.write(_csv_line(records[0]))
            target.rows += 1
        elif self.fmt == "parquet":
            self._parquet(split, records)
        else:
            target = self._file(f"{split}.jsonl")
            for record in records:
                target.write(dumps(record) + "\n")
            target.rows += len(records)
        self.counts[split] = self.counts.get(split, 0) + len(records)
        side = self._file(f"{split}.provenance.jsonl")
        side.write(dumps(provenance(pair)) + "\n")
        side.rows += 1
        self.pairs += 1
        self.agreement_sum += pair.agreement
        self.models.update(c.model for c in (pair.chosen, pair.rejected) if c and c.model)

    def _records(self, pair) -> list:
        if self.fmt == "csv":
            return [csv_row(pair)]
        records = RECORDS[self.fmt](pair)
        if self.fmt == "kto":  # each completion once per item
            if pair.item_id != self._item:
                self._item, self._seen = pair.item_id, set()
            records = [r for r in records if (r["completion"], r["label"]) not in self._seen]
            self._seen.update((r["completion"], r["label"]) for r in records)
        return records

    def _parquet(self, split: str, records: list[dict]) -> None:
        if split not in self.parquet:
            self.parquet[split] = _ParquetFile(self.folder / f"{split}.parquet")
        self.parquet[split].add(records)

    def close(self) -> list[dict]:
        """Close every file; their names, rows and sha256, sorted by name."""
        manifest = []
        for name, target in self.files.items():
            target.handle.close()
            manifest.append(
                {"name": name, "rows": target.rows, "sha256": target.digest.hexdigest()}
            )
        for target in self.parquet.values():
            manifest.append(target.close())
        return sorted(manifest, key=lambda e: e["name"])


def _csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def llama_factory_info(name: str, files: list[dict]) -> dict:
    """LLaMA-Factory's dataset_info.json entries, one dataset per split file."""
    columns = {
        "prompt": "instruction",
        "query": "input",
        "chosen": "chosen",
        "rejected": "rejected",
        "system": "system",
        "history": "history",
    }
    return {
        f"{name}_{entry['name'].split('.')[0]}": {
            "file_name": entry["name"],
            "ranking": True,
            "formatting": "alpaca",
            "columns": columns,
        }
        for entry in files
        if entry["name"].endswith(".jsonl") and ".provenance." not in entry["name"]
    }
