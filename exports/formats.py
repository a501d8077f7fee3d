"""Dataset formats: how one preference pair becomes a record of each consumer's format, and
writing a split's records to files, streamed and deterministic (sorted keys, fixed
separators, "\\n" line ends), with the sha256 of every file.

Texts are written exactly as stored: no separator, template or whitespace is added, except
where a row below says so.

- ``trl-conversational`` (lossless): TRL's conversational preference format: "prompt" is
  the message list (system prompt and earlier turns kept), "chosen" / "rejected" one
  assistant message each. TRL applies the model's chat template; use it for chat models.
- ``llama-factory`` (lossless): LLaMA-Factory's ranking data in the alpaca layout
  (instruction = the last user turn, input, chosen, rejected, system, history = the
  earlier [user, assistant] turns) and its ``dataset_info.json``.
- ``axolotl`` (lossless): the record Axolotl's ``chat_template.default`` DPO type reads:
  "messages" (the whole conversation, system prompt included), "chosen" / "rejected" as
  assistant messages (the dataset card has the YAML that loads the local files).
- ``parquet`` (lossless): prompt (the last user turn), prompt_messages (the whole
  conversation), chosen, rejected, agreement, dimension, source, confidence.
- ``trl``: TRL's standard preference format, {"prompt", "chosen", "rejected"} strings.
- ``kto``: TRL's unpaired format {"prompt", "completion", "label"}: each distinct completion
  of a prompt once, labelled by its pairs (``kto_labels``); both-bad candidates are false.
- ``csv``: prompt, better_response, weaker_response, diagnosis, scores, dimension,
  agreement, source, confidence; cells that a spreadsheet would run as a formula (a leading
  =, +, -, @, tab or carriage return) get a leading ``'`` unless ``csv_raw`` is chosen.
``trl``, ``kto`` and ``csv`` hold one prompt string, no conversation. A prompt with a system
prompt or earlier turns is refused there (``conversation="refuse"``, the default: the
export names how many and the formats that keep them) or written as a plain transcript
(``conversation="transcript"``: every prompt as "System: …", "User: …", "Assistant: …"
turns separated by a blank line, ending with the last user turn).
Beside every format: ``<split>.provenance.jsonl``, one line per record's pair with its ids,
models, parameters, annotators, agreement, answers, rubric scores and reasoning, and its
``source`` (the pair builder's rule, or ``human``) and ``confidence`` (exports.pairs); a
machine-made pair also its signal pair's id, status and reason. The formats read by
trainers with a fixed record (trl, trl-conversational, kto, axolotl, llama-factory) get no
extra keys: their provenance line, in the same order, has them.

Score columns (``score_columns``, or any binarization rule; exports.binarize): trl,
trl-conversational, parquet and csv records add ``margin`` (a number in every row: TRL's
RewardTrainer stacks the batch's margins into one tensor and subtracts them in its loss),
``score_chosen`` and ``score_rejected`` (null where a side has no score), and one flat
column per rubric aspect and side, ``score_chosen_<aspect>`` / ``score_rejected_<aspect>``
(flat numbers, not a dict: every loader, CSV included, reads them as plain float columns,
and TRL's RewardTrainer drops them as unused; aspect names are identifiers, see
tasks.schema). kto rows add ``score``, the completion's own score. The provenance line
adds margin, margin_from, the scores and the aspects of both sides. axolotl and
llama-factory records stay as their trainers read them.
"""

import csv
import hashlib
import io
import json
from pathlib import Path

from exports.pairs import JUDGE
from tasks.csvsafe import spreadsheet_cell
from tasks.lifecycle import JobRefused

FORMATS = ("trl", "trl-conversational", "kto", "axolotl", "llama-factory", "csv", "parquet")
# One prompt string per record: no place for a system prompt or earlier turns.
FLAT_FORMATS = ("trl", "kto", "csv")
KEEP_CONVERSATIONS = ("trl-conversational", "llama-factory", "axolotl", "parquet")
CSV_HEADER = [
    "prompt",
    "better_response",
    "weaker_response",
    "diagnosis",
    "scores",
    "dimension",
    "agreement",
    "source",
    "confidence",
]
PARQUET_ROWS = 10_000  # rows per Parquet row group (and per write)
# The formats whose records take the score columns (and kto: a completion's score).
SCORED_FORMATS = ("trl", "trl-conversational", "parquet", "csv")


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


def is_conversation(prompt) -> bool:
    """Whether the prompt holds more than its last user turn: a system prompt or earlier
    turns, which a flat format has no place for."""
    return len(prompt.messages or []) > 1


def transcript(prompt) -> str:
    """The documented plain transcript: each turn as "<Role>: <content>", a blank line
    between turns, ending with the last user turn (no assistant cue is invented)."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages_of(prompt))


def dimension_of(pair) -> str:
    return next((v for k, v in pair.answers.items() if "dimension" in k), "")


def trl(pair, prompt: str) -> list[dict]:
    return [{"prompt": prompt, "chosen": pair.chosen.text, "rejected": pair.rejected.text}]


def trl_conversational(pair, prompt: str) -> list[dict]:
    return [
        {
            "prompt": messages_of(pair.prompt),
            "chosen": [{"role": "assistant", "content": pair.chosen.text}],
            "rejected": [{"role": "assistant", "content": pair.rejected.text}],
        }
    ]


def kto(pair, prompt: str) -> list[dict]:
    records = []
    if pair.chosen is not None:
        records.append({"prompt": prompt, "completion": pair.chosen.text, "label": True})
    records.append({"prompt": prompt, "completion": pair.rejected.text, "label": False})
    return records


def axolotl(pair, prompt: str) -> list[dict]:
    return [
        {
            "messages": messages_of(pair.prompt),
            "chosen": {"role": "assistant", "content": pair.chosen.text},
            "rejected": {"role": "assistant", "content": pair.rejected.text},
        }
    ]


def llama_factory(pair, prompt: str) -> list[dict]:
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


def parquet(pair, prompt: str) -> list[dict]:
    return [
        {
            "prompt": pair.prompt.text,
            "prompt_messages": messages_of(pair.prompt),
            "chosen": pair.chosen.text,
            "rejected": pair.rejected.text,
            "agreement": float(pair.agreement),
            "dimension": dimension_of(pair),
            "source": pair.source,
            "confidence": float(pair.confidence),
        }
    ]


def csv_row(pair, prompt: str, *, raw: bool = False) -> list:
    # Spreadsheets must not run a prompt as a formula, unless the lead asks for raw cells.
    cell = (lambda text: text) if raw else spreadsheet_cell
    return [
        cell(prompt),
        cell(pair.chosen.text),
        cell(pair.rejected.text),
        cell(" | ".join(pair.reasoning)),
        dumps(pair.rubric) if pair.rubric else "",
        cell(dimension_of(pair)),
        pair.agreement,
        pair.source,
        pair.confidence,
    ]


def score_names(aspects: list[str]) -> list[str]:
    """The score columns, in order, for a rubric with these aspects."""
    sides = [f"score_{side}_{name}" for side in ("chosen", "rejected") for name in aspects]
    return ["margin", "score_chosen", "score_rejected", *sides]


def score_values(pair, aspects: list[str]) -> dict:
    """The score columns of a pair (exports.binarize.Scored); null where none."""
    scored = pair.scored
    values = {
        "margin": float(scored.margin),
        "score_chosen": scored.score_chosen,
        "score_rejected": scored.score_rejected,
    }
    for side, means in (("chosen", scored.aspects_chosen), ("rejected", scored.aspects_rejected)):
        for name in aspects:
            value = means.get(name)
            values[f"score_{side}_{name}"] = None if value is None else float(value)
    return values


def scored_provenance(pair) -> dict:
    scored = pair.scored
    return {
        "margin": scored.margin,
        "margin_from": scored.margin_from,
        "score_chosen": scored.score_chosen,
        "score_rejected": scored.score_rejected,
        "aspects": {"chosen": scored.aspects_chosen, "rejected": scored.aspects_rejected},
    }


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
        "source": pair.source,
        "confidence": pair.confidence,
        **(
            {"signal_pair": pair.signal_pair, "status": pair.status, "reason": pair.reason}
            if pair.signal_pair is not None
            else {"status": pair.status, "reason": pair.reason}
            if pair.source == JUDGE
            else {}
        ),
        **(scored_provenance(pair) if pair.scored is not None else {}),
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

    def __init__(self, path: Path, scores: list[str] = ()):
        # pyarrow takes a good part of a second to import: only Parquet exports load it.
        import pyarrow as pa
        import pyarrow.parquet as pq

        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        schema = pa.schema(
            [
                ("prompt", pa.string()),
                ("prompt_messages", pa.list_(message)),
                ("chosen", pa.string()),
                ("rejected", pa.string()),
                ("agreement", pa.float64()),
                ("dimension", pa.string()),
                ("source", pa.string()),
                ("confidence", pa.float64()),
                *((name, pa.float64()) for name in scores),
            ]
        )
        self.path, self.pending, self.rows = path, [], 0
        self.writer = pq.ParquetWriter(path, schema)

    def add(self, records: list[dict]) -> None:
        self.pending.extend(records)
        self.rows += len(records)
        if len(self.pending) >= PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa  # loaded by __init__ already (see there)

        if self.pending:
            table = pa.Table.from_pylist(self.pending, schema=self.writer.schema)
            self.writer.write_table(table)
            self.pending = []

    def close(self) -> dict:
        self._flush()
        self.writer.close()
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"name": self.path.name, "rows": self.rows, "sha256": digest}


class ConversationRefused(JobRefused, ValueError):
    """A flat format met a prompt with a system prompt or earlier turns, and the lead chose
    to refuse rather than write a transcript."""


def conversation_refusal(fmt: str, count: int) -> str:
    keep = ", ".join(KEEP_CONVERSATIONS)
    return (
        f"{count} judged prompt(s) hold a conversation (a system prompt or earlier turns) "
        f"that the {fmt} format has no place for. Export as {keep}, which keep every turn, "
        'or have every prompt written as a plain transcript (conversation "transcript").'
    )


class _KtoLabels:
    """KTO's rows of one prompt: each distinct completion once. A completion chosen in some
    of the prompt's pairs and rejected in others (a middle candidate, or annotators who
    disagree) takes the label of most of its pairs, and is left out on a tie or, under the
    ``unanimous`` policy, always; ``conflicts`` counts both for the dataset card."""

    def __init__(self, policy: str):
        self.policy = policy
        self.prompt_id, self.split, self.prompt = None, None, ""
        self.votes: dict[str, list[int]] = {}  # completion -> [true, false], first-seen order
        self.scores: dict[str, float | None] = {}  # completion -> its score (score columns)
        self.conflicts = {"labelled_by_majority": 0, "left_out": 0}

    def add(self, pair, records: list[dict]) -> list[tuple[str, list[dict]]]:
        """Take a pair's records; the rows of the previous prompt once a new one starts."""
        done = self.flush() if pair.prompt.pk != self.prompt_id else []
        self.prompt_id, self.split = pair.prompt.pk, pair.split
        for record in records:
            self.prompt = record["prompt"]
            votes = self.votes.setdefault(record["completion"], [0, 0])
            votes[0 if record["label"] else 1] += 1
            if "score" in record:
                self.scores.setdefault(record["completion"], record["score"])
        return done

    def flush(self) -> list[tuple[str, list[dict]]]:
        rows = []
        for completion, (true, false) in self.votes.items():
            if true and false:
                if self.policy == "unanimous" or true == false:
                    self.conflicts["left_out"] += 1
                    continue
                self.conflicts["labelled_by_majority"] += 1
            row = {"prompt": self.prompt, "completion": completion, "label": true > false}
            if completion in self.scores:
                row["score"] = self.scores[completion]
            rows.append(row)
        self.votes, self.scores = {}, {}
        return [(self.split, rows)] if rows else []


class SplitWriter:
    """The files of one export: ``<split>.<ext>`` and ``<split>.provenance.jsonl`` for each
    split that gets a record, opened on first use, hashed as written. ``options`` are the
    export's (exports.pairs.Options): conversation handling, raw CSV, the KTO policy;
    ``aspects`` (the rubric's, with score columns; None without) name the score columns."""

    def __init__(self, folder: Path, fmt: str, options=None, aspects: list[str] | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        self.folder, self.fmt = Path(folder), fmt
        self.conversation = getattr(options, "conversation", "refuse")
        self.csv_raw = getattr(options, "csv_raw", False)
        self.files: dict[str, _File] = {}
        self.parquet: dict[str, _ParquetFile] = {}
        self.counts: dict[str, int] = {}
        self.models: set[str] = set()
        self.agreement_sum = 0.0
        self.judged = 0  # pairs people judged: the mean agreement is theirs
        self.pairs = 0
        self.sources: dict[str, int] = {}
        self.kto = _KtoLabels(getattr(options, "policy", "adjudicated")) if fmt == "kto" else None
        self.aspects = aspects
        self.scores = score_names(aspects) if aspects is not None else []

    def _records(self, pair, prompt: str) -> list:
        """The pair's records in this format, with the score columns when asked for."""
        if self.fmt == "csv":
            row = csv_row(pair, prompt, raw=self.csv_raw)
            if self.scores:
                row += list(score_values(pair, self.aspects).values())
            return [row]
        records = kto(pair, prompt) if self.kto is not None else RECORDS[self.fmt](pair, prompt)
        if not self.scores:
            return records
        if self.kto is not None:
            sides = [pair.scored.score_chosen] if pair.chosen is not None else []
            for record, score in zip(records, [*sides, pair.scored.score_rejected], strict=True):
                record["score"] = score
        elif self.fmt in SCORED_FORMATS:
            records[0].update(score_values(pair, self.aspects))
        return records

    def _file(self, name: str, header: list | None = None) -> _File:
        if name not in self.files:
            self.files[name] = _File(self.folder / name)
            if header:
                self.files[name].write(_csv_line(header))
        return self.files[name]

    def add(self, pair) -> None:
        if pair.chosen is None and self.fmt != "kto":
            return  # a both-bad completion: only the unpaired format takes it
        flat = self.fmt in FLAT_FORMATS
        if flat and self.conversation != "transcript" and is_conversation(pair.prompt):
            # export_to_folder refused such a project before writing (with the count); a
            # prompt that became a conversation since is refused here, never flattened.
            raise ConversationRefused(conversation_refusal(self.fmt, 1))
        transcribe = flat and self.conversation == "transcript"
        prompt = transcript(pair.prompt) if transcribe else pair.prompt.text
        records = self._records(pair, prompt)
        if self.kto is not None:
            for split, rows in self.kto.add(pair, records):
                self._write(split, rows)
        else:
            self._write(pair.split, records)
        side = self._file(f"{pair.split}.provenance.jsonl")
        side.write(dumps(provenance(pair)) + "\n")
        side.rows += 1
        self.pairs += 1
        self.sources[pair.source] = self.sources.get(pair.source, 0) + 1
        if pair.judgments:
            self.judged += 1
            self.agreement_sum += pair.agreement
        self.models.update(c.model for c in (pair.chosen, pair.rejected) if c and c.model)

    def _write(self, split: str, records: list) -> None:
        if self.fmt == "csv":
            target = self._file(f"{split}.csv", CSV_HEADER + self.scores)
            target.write(_csv_line(records[0]))
            target.rows += 1
        elif self.fmt == "parquet":
            if split not in self.parquet:
                self.parquet[split] = _ParquetFile(self.folder / f"{split}.parquet", self.scores)
            self.parquet[split].add(records)
        else:
            target = self._file(f"{split}.jsonl")
            for record in records:
                target.write(dumps(record) + "\n")
            target.rows += len(records)
        self.counts[split] = self.counts.get(split, 0) + len(records)

    def close(self) -> list[dict]:
        """Close every file; their names, rows and sha256, sorted by name."""
        if self.kto is not None:
            for split, rows in self.kto.flush():
                self._write(split, rows)
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
