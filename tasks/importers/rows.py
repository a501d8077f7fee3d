"""Reading prompt rows from JSON, JSONL and CSV files, one row at a time.

Files are streamed: a JSON array is decoded item by item from a bounded buffer, JSONL and
CSV line by line, so a file of any size needs memory for one row. Bytes are decoded with
``surrogateescape``: a byte that is not UTF-8 becomes a marker that ``normalize_row``
reports for the row and key it is in, and the rows around it still import.

Every problem is a ``RowProblem`` naming the file, the line or row, and the key. Hostile
input (nesting deep enough to exhaust the stack, NaN, lone surrogates, control characters,
an archive uploaded under a data name) is a problem like any other, never an exception.
"""

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from typing import IO, Any

from tasks.text import content_hash

CHUNK = 256 * 1024
MAX_ROW_CHARS = 8 * 1024 * 1024  # one JSON row may not exceed this (bounded buffer)
FORMATS = ("json", "jsonl", "csv")
# Any surrogate: the markers surrogateescape makes of bytes that are not UTF-8, and the
# lone ones a JSON escape such as \ud83d makes; PostgreSQL (UTF-8) can store neither.
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls other than tab, line feed, vertical tab (Word's line break), form feed and
# carriage return: invisible to annotators, and in practice a sign of binary data.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f]")
# An id is one visible line: no control character at all, no byte-order mark.
_ID_CONTROL = re.compile("[\x00-\x1f\x7f\ufeff]")
ROLES = ("system", "user", "assistant")

# The csv module refuses fields over 128 KiB by default, below what a prompt may hold; the
# per-field limit (CHOSEN_IMPORT_MAX_FIELD_CHARS) is applied afterwards with a clear message.
csv.field_size_limit(MAX_ROW_CHARS)

# What a file that is not text starts with: name it rather than report its bytes as rows.
_SIGNATURES = (
    (b"PK\x03\x04", "a ZIP archive; unpack it and upload the files inside"),
    (b"\x1f\x8b", "a gzip archive; unpack it and upload the file inside"),
    (b"\xff\xfe\x00\x00", "UTF-32 text; save it as UTF-8"),
    (b"\xff\xfe", "UTF-16 text; save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text; save it as UTF-8"),
    (b"%PDF", "a PDF document"),
)


@dataclass
class RowProblem:
    """A problem in an import file: a data row, or a key of a Potato config."""

    file: str
    where: str  # "line 12", "item 7 (line 30)", or "" when no line applies
    message: str
    key: str | None = None
    row_id: str | None = None

    def __str__(self) -> str:
        where = f", {self.where}" if self.where else ""
        ident = f" (id {self.row_id!r})" if self.row_id else ""
        key = f", key '{self.key}'" if self.key else ""
        return f"{self.file}{where}{ident}{key}: {self.message}"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "where": self.where,
            "key": self.key,
            "id": self.row_id,
            "message": self.message,
        }


@dataclass
class RawRow:
    file: str
    where: str
    data: dict


@dataclass
class CandidateRow:
    text: str
    source_key: str
    model: str = ""
    parameters: dict = field(default_factory=dict)
    finish_reason: str = ""
    # Its identity within its prompt, computed where the row is read (an import's reading
    # thread, tasks.importers.ahead), not where it is written.
    digest: str = field(init=False)

    def __post_init__(self):
        self.digest = candidate_hash(self.text)


@dataclass
class PromptRow:
    file: str
    where: str
    external_id: str
    text: str
    messages: list | None
    metadata: dict
    candidates: list[CandidateRow]
    content_hash: str


class FileProblem(Exception):
    """The file as a whole cannot be read (bad format, bad header, broken JSON)."""

    def __init__(self, problem: RowProblem):
        self.problem = problem
        super().__init__(str(problem))


def detect_format(name: str) -> str:
    lower = name.lower()
    for suffix, fmt in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "json"),
        (".csv", "csv"),
    ):
        if lower.endswith(suffix):
            return fmt
    raise FileProblem(RowProblem(name, "file", "unknown format: use .json, .jsonl or .csv"))


def read_rows(
    stream: IO[bytes],
    *,
    name: str,
    fmt: str | None = None,
    id_key: str | None = "id",
    text_key: str = "text",
) -> Iterator[RawRow | RowProblem]:
    """Yield each row of a binary stream as a RawRow, or a RowProblem for a row that cannot
    be parsed. Raises FileProblem when the file cannot be read any further. A CSV header
    must name ``id_key`` and ``text_key`` (or ``messages``), unless ``id_key`` is None."""
    fmt = fmt or detect_format(name)
    _check_is_text(stream, name, fmt)
    text = io.TextIOWrapper(stream, encoding="utf-8", errors="surrogateescape", newline="")
    if fmt == "jsonl":
        yield from _jsonl(text, name)
    elif fmt == "json":
        yield from _json_array(text, name)
    elif fmt == "csv":
        yield from _csv(text, name, id_key=id_key, text_key=text_key)
    else:
        raise FileProblem(RowProblem(name, "file", f"unknown format {fmt!r}"))


def _check_is_text(stream: IO[bytes], name: str, fmt: str) -> None:
    """Refuse an archive, a PDF or UTF-16 text by name: read as UTF-8 it would be a page of
    meaningless row errors. Nothing is decompressed, so a zip bomb stays a small file."""
    try:
        start = stream.tell()
        head = stream.read(4096)
        stream.seek(start)
    except (OSError, ValueError, AttributeError):
        return  # not seekable: the rows will tell
    what = next((what for magic, what in _SIGNATURES if head.startswith(magic)), None)
    # UTF-16 without a byte-order mark: every other byte of ASCII text is NUL.
    if what is None and len(head) >= 16 and head.count(b"\x00") * 3 > len(head):
        what = "UTF-16 text or binary data; save it as UTF-8"
    if what:
        raise FileProblem(
            RowProblem(name, "file", f"this is not {fmt.upper()} text: the file is {what}")
        )


class _BadJson(Exception):
    """``pos`` and ``column`` are set for a syntax error (which, in a buffer, may only mean
    the text was cut), not for input the decoder cannot take at all."""

    def __init__(self, message: str, column: int | None = None, pos: int | None = None):
        self.message, self.column, self.pos = message, column, pos


def _decode_json(decode, *args):
    """Run a json decode call; every way it can fail on hostile input is a _BadJson."""
    try:
        return decode(*args)
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Unexpected UTF-8 BOM"):
            raise _BadJson(_MID_BOM) from None
        raise _BadJson(exc.msg, exc.colno, exc.pos) from None
    except (RecursionError, ValueError) as exc:
        raise _BadJson(_hostile_json(exc)) from None


def _hostile_json(exc: Exception) -> str:
    """What the decoder's non-JSONDecodeError failures mean to the person with the file."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    # ValueError: Python refuses integers of more than 4,300 digits.
    return "a number has too many digits"


_MID_BOM = "a byte-order mark (U+FEFF) in the middle of the file: were two files joined? remove it"


def _jsonl(text: IO[str], name: str) -> Iterator[RawRow | RowProblem]:
    loads = json.loads
    number = 0
    while True:
        # Read a bounded line: one row of the limit's size, not a file-sized line, in memory.
        line = text.readline(MAX_ROW_CHARS + 1)
        if not line:
            return
        number += 1
        where = f"line {number}"
        if len(line) > MAX_ROW_CHARS and not line.endswith(("\n", "\r")):
            while (rest := text.readline(CHUNK)) and not rest.endswith(("\n", "\r")):
                pass
            yield RowProblem(name, where, f"the line is longer than {MAX_ROW_CHARS:,} characters")
            continue
        if line.startswith("\ufeff"):
            if number > 1:
                yield RowProblem(name, where, _MID_BOM)
                continue
            line = line[1:]
        if not line.strip():
            continue
        try:
            data = _decode_json(loads, line)
        except _BadJson as exc:
            at = f" at column {exc.column}" if exc.column else ""
            yield RowProblem(name, where, f"not valid JSON ({exc.message}{at})")
            continue
        if not isinstance(data, dict):
            yield RowProblem(name, where, "a row must be a JSON object")
            continue
        yield RawRow(name, where, data)


def _json_array(text: IO[str], name: str) -> Iterator[RawRow | RowProblem]:
    decoder = json.JSONDecoder()
    buf, pos, eof = "", 0, False
    line, counted = 1, 0  # line number at buffer offset `counted`

    def fill() -> bool:
        nonlocal buf, pos, eof, counted, line
        if eof:
            return False
        if pos > CHUNK:  # drop what has been consumed
            line += buf.count("\n", counted, pos)
            buf, counted, pos = buf[pos:], 0, 0
        chunk = text.read(CHUNK)
        if not chunk:
            eof = True
            return False
        buf += chunk
        return True

    def line_at(offset: int) -> int:
        nonlocal line, counted
        line += buf.count("\n", counted, offset)
        counted = offset
        return line

    def skip_ws() -> str:
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                pos += 1
            if pos < len(buf) or not fill():
                return buf[pos] if pos < len(buf) else ""

    if skip_ws() != "[":
        raise FileProblem(
            RowProblem(
                name,
                f"line {line_at(pos)}",
                "a .json file must hold a "
                "list of objects ([{…}, {…}]); use .jsonl for one per line",
            )
        )
    pos += 1
    index = 0
    while True:
        char = skip_ws()
        if char == "]":
            return
        if char == "":
            raise FileProblem(RowProblem(name, f"line {line_at(pos)}", "the list is not closed"))
        index += 1
        while True:
            try:
                data, end = _decode_json(decoder.raw_decode, buf, pos)
                break
            except _BadJson as exc:
                # A syntax error may only mean the buffer cut the item: read on, within a bound.
                if exc.pos is not None and len(buf) - pos < MAX_ROW_CHARS and fill():
                    continue
                raise FileProblem(
                    RowProblem(
                        name,
                        f"line {line_at(pos if exc.pos is None else exc.pos)}",
                        f"not valid JSON ({exc.message}) in item {index}",
                    )
                ) from None
        where = f"item {index} (line {line_at(pos)})"
        pos = end
        if isinstance(data, dict):
            yield RawRow(name, where, data)
        else:
            yield RowProblem(name, where, "a row must be a JSON object")
        char = skip_ws()
        if char == ",":
            pos += 1
        elif char != "]":
            raise FileProblem(
                RowProblem(name, f"line {line_at(pos)}", f"expected ',' or ']' after item {index}")
            )


def _csv(
    text: IO[str], name: str, *, id_key: str | None, text_key: str
) -> Iterator[RawRow | RowProblem]:
    # strict: a quote left open runs to the end of the file, which must be an error naming
    # the row where it opened, not one giant value.
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FileProblem(RowProblem(name, "line 1", "the file is empty")) from None
    except csv.Error as exc:
        raise FileProblem(RowProblem(name, "line 1", _csv_error(exc))) from None
    header = [h.lstrip("\ufeff").strip() for h in header]
    if len(set(header)) != len(header):
        raise FileProblem(RowProblem(name, "line 1", f"the header repeats a column: {header}"))
    if id_key is not None:  # None: the caller checks the columns (feedback imports)
        check_csv_header(header, id_key=id_key, text_key=text_key, name=name)
    while True:
        first_line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileProblem(RowProblem(name, f"line {first_line}", _csv_error(exc))) from None
        if not any(v.strip() for v in values):
            continue
        where = f"line {reader.line_num}"
        if [v.lstrip("\ufeff").strip() for v in values] == header:
            yield RowProblem(
                name, where, "the header row appears again here: were two files joined? remove it"
            )
            continue
        if len(values) != len(header):
            yield RowProblem(name, where, f"{len(values)} values for {len(header)} columns")
            continue
        row = dict(zip(header, values, strict=True))
        # JSON-valued columns: a conversation, metadata, a list of responses.
        for key in ("messages", "metadata", "responses", "candidates"):
            if row.get(key, "").strip().startswith(("[", "{")):
                try:
                    row[key] = _decode_json(json.loads, row[key])
                except _BadJson as exc:
                    yield RowProblem(name, where, f"not valid JSON ({exc.message})", key=key)
                    break
        else:
            yield RawRow(name, where, row)


def _csv_error(exc: csv.Error) -> str:
    message = str(exc)
    if message == "unexpected end of data":
        return 'a quoted value opened in this row is never closed (a missing ")'
    if message.startswith("field larger than field limit"):
        return f"a value is longer than {MAX_ROW_CHARS:,} characters"
    if "expected after" in message:
        return f'not valid CSV ({message}): a quote inside a quoted value must be doubled ("")'
    return f"not valid CSV ({message})"


def check_csv_header(header: list[str], *, id_key: str, text_key: str, name: str) -> None:
    missing = [k for k in (id_key,) if k not in header]
    if text_key not in header and "messages" not in header:
        missing.append(text_key)
    if missing:
        raise FileProblem(
            RowProblem(
                name,
                "line 1",
                f"the header lacks {', '.join(repr(m) for m in missing)} "
                f"(found: {', '.join(header)})",
            )
        )


# --- one row → one prompt with its candidates -------------------------------------------


def candidate_text(text: str) -> str:
    """What counts as the same candidate of one prompt: the text as written, with line
    endings as LF and without trailing whitespace at its very end. Nothing else is folded:
    case, Unicode form (𝔘𝔫𝔦𝔠𝔬𝔡𝔢 is not UNICODE), tabs and inner spaces are the response a
    model is trained on. The stored text is never rewritten; this only decides equality.

    Why not compare exactly: a file re-saved on Windows or exported from a spreadsheet
    comes back with CRLF, a browser sends a textarea's corrections with CRLF, and an editor
    adds or drops a final newline. Those copies would otherwise come in as new candidates
    on a re-import, and an annotator would be shown two responses that look the same.
    Responses that differ in anything else are kept; QC reports near-identical pairs.
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip()


def candidate_hash(text: str) -> str:
    """A candidate's identity within its prompt (``Candidate.content_hash``, unique per
    prompt): SHA-256 of ``candidate_text``."""
    return sha256(candidate_text(text).encode("utf-8")).hexdigest()


class _Invalid(Exception):
    def __init__(self, message: str, key: str | None = None):
        self.message, self.key = message, key


def _check_text(
    value: Any, key: str, limit: int, *, allow_empty: bool = False, is_id: bool = False
) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Invalid(f"must be text, not {type(value).__name__}", key)
    problem = _unstorable_text(value)
    if problem:
        raise _Invalid(problem, key)
    control = (_ID_CONTROL if is_id else _CONTROL).search(value)
    if control:
        raise _Invalid(
            f"contains the invisible character U+{ord(control.group()):04X}; remove it", key
        )
    if not allow_empty and not value.strip():
        raise _Invalid("is empty", key)
    if len(value) > limit:
        raise _Invalid(f"is {len(value):,} characters; the limit is {limit:,}", key)
    return value


def _unstorable_text(value: str) -> str | None:
    """Why PostgreSQL could not store this text, in the words of the person who has the file."""
    surrogate = _SURROGATE.search(value)
    if surrogate:
        code = ord(surrogate.group())
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (see read_rows)
            return f"not valid UTF-8 (byte 0x{code - 0xDC00:02x}); save the file as UTF-8"
        return f"holds a lone surrogate (\\u{code:04x}), which is not valid Unicode"
    if "\x00" in value:
        return "contains a NUL character"
    return None


def _unstorable_json(value: Any) -> str | None:
    """The first reason a JSON value (metadata, generation parameters) cannot be stored:
    text PostgreSQL refuses anywhere in it, or NaN / Infinity, which JSON does not have.
    Walked with a stack, not recursion: the decoder already allowed ~1,000 levels."""
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            problem = _unstorable_text(value)
            if problem:
                return problem
        elif isinstance(value, float) and not math.isfinite(value):
            return "holds NaN or Infinity, which JSON does not allow"
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


_RESPONSE_KEY = re.compile(r"^(response|candidate|completion)_[A-Za-z0-9]+$")


def candidate_keys_of(data: dict, configured: list[str]) -> list[str]:
    if configured:
        return configured
    return sorted(k for k in data if _RESPONSE_KEY.match(k))


def normalize_row(
    raw: RawRow, *, id_key: str, text_key: str, candidate_fields: list[str], limit: int
) -> PromptRow | RowProblem:
    data = raw.data
    row_id = None
    try:
        if id_key not in data or data[id_key] in (None, ""):
            raise _Invalid("missing", id_key)
        row_id = _check_text(data[id_key], id_key, 200, is_id=True).strip()
        messages = None
        prompt = data.get(text_key)
        if prompt is None and "messages" in data:
            prompt = data["messages"]
        if prompt is None:
            raise _Invalid("missing", text_key)
        if isinstance(prompt, list):
            messages = _check_messages(prompt, text_key if text_key in data else "messages", limit)
            text = messages[-1]["content"]
        else:
            text = _check_text(prompt, text_key, limit)
        candidates = []
        used = {id_key, text_key, "messages", "metadata", "responses", "candidates"}
        for key in candidate_keys_of(data, candidate_fields):
            used.add(key)
            if key not in data:
                if candidate_fields:
                    raise _Invalid("missing", key)
                continue
            if isinstance(data[key], list):  # Potato 2.x items_key: the texts, listed
                candidates.extend(
                    _list_candidate(entry, f"{key}[{i}]", limit)
                    for i, entry in enumerate(data[key])
                )
                continue
            candidates.append(CandidateRow(_check_text(data[key], key, limit), key))
        for list_key in ("responses", "candidates"):
            for i, entry in enumerate(data.get(list_key) or []):
                candidates.append(_list_candidate(entry, f"{list_key}[{i}]", limit))
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise _Invalid("must be an object", "metadata")
        extra = {k: v for k, v in data.items() if k not in used}
        if extra:
            metadata = {**extra, **metadata}
        problem = _unstorable_json(metadata)
        if problem:
            raise _Invalid(problem, "metadata")
    except _Invalid as problem:
        return RowProblem(raw.file, raw.where, problem.message, key=problem.key, row_id=row_id)
    return PromptRow(
        file=raw.file,
        where=raw.where,
        external_id=row_id,
        text=text,
        messages=messages,
        metadata=metadata,
        candidates=candidates,
        content_hash=content_hash(json.dumps(messages, ensure_ascii=False) if messages else text),
    )


def _check_messages(messages: list, key: str, limit: int, text=None) -> list[dict]:
    """A conversation's turns checked: roles, texts (``text(value, key)``, by default
    ``_check_text`` at ``limit``; feedback imports pass theirs, which redacts), a last user
    turn."""
    if text is None:

        def text(value, at):
            return _check_text(value, at, limit)

    if not messages:
        raise _Invalid("the conversation is empty", key)
    checked = []
    for i, message in enumerate(messages):
        at = f"{key}[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise _Invalid(f"needs a 'role' ({', '.join(ROLES)}) and 'content'", at)
        checked.append({"role": message["role"], "content": text(message.get("content"), at)})
    if checked[-1]["role"] != "user":
        raise _Invalid("the conversation must end with a user turn", key)
    return checked


def _list_candidate(entry: Any, key: str, limit: int) -> CandidateRow:
    if isinstance(entry, str):
        return CandidateRow(_check_text(entry, key, limit), key)
    if not isinstance(entry, dict):
        raise _Invalid("must be text or an object with 'text'", key)
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _Invalid("must be an object", f"{key}.parameters")
    problem = _unstorable_json(parameters)
    if problem:
        raise _Invalid(problem, f"{key}.parameters")
    return CandidateRow(
        text=_check_text(entry.get("text"), f"{key}.text", limit),
        source_key=key,
        model=_check_text(entry.get("model") or "", f"{key}.model", 200, allow_empty=True),
        parameters=parameters,
        finish_reason=_check_text(
            entry.get("finish_reason") or "", f"{key}.finish_reason", 32, allow_empty=True
        ),
    )
