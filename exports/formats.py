"""Dataset formats: how one preference pair becomes a record of each consumer's format,
and writing a split's records to files, streamed, deterministic (sorted keys, fixed
separators, "\\n" line ends), with the sha256 of every file.

- ``trl``: TRL's standard preference format, {"prompt", "chosen", "rejected"} strings.
- ``trl-conversational``: TRL's conversational preference format: "prompt" is the message
  list (system prompt and earlier turns kept), "chosen" / "rejected" one assistant message.
- ``csv``: prompt, better_response, weaker_response, diagnosis, scores, dimension, agreement.
- ``provenance``: one JSON line per pair with its ids, models, parameters, annotators,
  agreement, answers, rubric scores and reasoning (beside every format).
"""

import csv
import hashlib
import io
import json
from pathlib import Path

FORMATS = ("trl", "trl-conversational", "csv")
CSV_HEADER = [
    "prompt",
    "better_response",
    "weaker_response",
    "diagnosis",
    "scores",
    "dimension",
    "agreement",
]


def dumps(record) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def messages_of(prompt) -> list[dict]:
    """The prompt as chat messages: the imported conversation, or one user turn."""
    if prompt.messages:
        return [{"role": m["role"], "content": m["content"]} for m in prompt.messages]
    return [{"role": "user", "content": prompt.text}]


def trl(pair) -> dict:
    return {"prompt": pair.prompt.text, "chosen": pair.chosen.text, "rejected": pair.rejected.text}


def trl_conversational(pair) -> dict:
    return {
        "prompt": messages_of(pair.prompt),
        "chosen": [{"role": "assistant", "content": pair.chosen.text}],
        "rejected": [{"role": "assistant", "content": pair.rejected.text}],
    }


def dimension_of(pair) -> str:
    return next((v for k, v in pair.answers.items() if "dimension" in k), "")


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


def _cell(value: str) -> str:
    """Spreadsheets run cells that start with = + - @ as formulas: not ours."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


def provenance(pair) -> dict:
    return {
        "split": pair.split,
        "item_id": pair.item_id,
        "prompt_id": pair.prompt.pk,
        "prompt_external_id": pair.prompt.external_id,
        "chosen": _candidate(pair.chosen),
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


JSONL = {"trl": trl, "trl-conversational": trl_conversational}


class SplitWriter:
    """The files of one export: ``<split>.<ext>`` and ``<split>.provenance.jsonl`` for each
    split that gets a pair, opened on first use, hashed as written."""

    def __init__(self, folder: Path, fmt: str):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.folder, self.fmt = Path(folder), fmt
        self.files: dict[str, list] = {}  # name -> [file, sha256, rows]
        self.counts: dict[str, int] = {}

    def _open(self, name: str, header: list | None = None):
        if name not in self.files:
            handle = (self.folder / name).open("w", encoding="utf-8", newline="")
            self.files[name] = [handle, hashlib.sha256(), 0]
            if header:
                self._write(name, self._csv_line(header))
        return self.files[name]

    def _write(self, name: str, text: str) -> None:
        entry = self.files[name]
        entry[0].write(text)
        entry[1].update(text.encode("utf-8"))

    @staticmethod
    def _csv_line(values: list) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        return buffer.getvalue()

    def add(self, pair) -> None:
        split = pair.split
        if self.fmt == "csv":
            name = f"{split}.csv"
            self._open(name, CSV_HEADER)
            self._write(name, self._csv_line(csv_row(pair)))
        else:
            name = f"{split}.jsonl"
            self._open(name)
            self._write(name, dumps(JSONL[self.fmt](pair)) + "\n")
        self.files[name][2] += 1
        self.counts[split] = self.counts.get(split, 0) + 1
        side = f"{split}.provenance.jsonl"
        self._open(side)
        self._write(side, dumps(provenance(pair)) + "\n")
        self.files[side][2] += 1

    def close(self) -> list[dict]:
        """Close every file; their names, rows and sha256, sorted by name."""
        manifest = []
        for name, (handle, digest, rows) in sorted(self.files.items()):
            handle.close()
            manifest.append({"name": name, "rows": rows, "sha256": digest.hexdigest()})
        return manifest
