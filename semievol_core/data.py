"""Records, loaders (csv / jsonl / parquet / Hugging Face datasets) with a column mapping, validation and
content fingerprints. Every problem raises InputError naming the file, the 1-based data row and the field."""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .answers import LETTERS, answer_key, format_number, parse_number
from .config import Columns, DataConfig
from .errors import InputError, path_problem

_SURROGATE = re.compile(r"[\udc80-\udcff]")
csv.field_size_limit(64 * 1024 * 1024)


@dataclass(frozen=True)
class Record:
    id: str
    question: str
    options: list[str] | None
    answer: str | None  # canonical: a letter, a label from the set, or a number's repr; None = no answer
    category: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass
class Dataset:
    source: str
    task: str
    records: list[Record]
    fingerprint: str
    notes: list[str] = field(default_factory=list)  # upstream quirks fixed on load, reported not hidden
    ids_from_rows: bool = False  # no id column: ids are row numbers, which name other rows in another file

    def __len__(self):
        return len(self.records)

    def by_id(self) -> dict[str, Record]:
        return {r.id: r for r in self.records}

    def has_gold(self) -> bool:
        return any(r.answer is not None for r in self.records)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and not value.strip())


def _read_rows(source: str) -> tuple[list[dict], list[str]]:
    """Rows as dicts, plus the column names. Bytes that are not UTF-8 survive as surrogates so that the
    validation can name the row and field that holds them."""
    if source.startswith("hf:"):
        return _read_hf(source)
    path = Path(source)
    problem = path_problem(path)
    if problem:
        raise InputError(source, None, None, problem)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq
        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for a broken file
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(source, None, None, f"not a readable parquet file ({first_line})") from None
        _unique_columns(source, table.column_names)
        if table.num_rows == 0:
            raise InputError(source, 1, None, "no data rows")
        return table.to_pylist(), table.column_names
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv", ".tsv"):
        raise InputError(source, None, None, f"unsupported file type {suffix!r} (csv, tsv, jsonl, parquet, hf:)")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(source, None, None, f"cannot be read ({err.strerror})") from None
    if not raw.strip():
        raise InputError(source, 0, None, "file is empty")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\0" in raw:
        # UTF-16 and binary files hold NUL bytes; decoded as UTF-8 they would only give garbled columns.
        raise InputError(source, None, None, "not UTF-8 text (UTF-16 or binary: it holds NUL bytes)")
    text = raw.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _json_rows(source, text, suffix)
    # The csv module, not DictReader: a duplicate column name or a row with more fields than the header
    # would silently lose values there. skipinitialspace: 'a, "b, c"' is two fields, as a user means it.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",",
                        skipinitialspace=True)
    columns = next(reader, [])
    if not columns:
        raise InputError(source, 0, None, "the first line, the header, is empty")
    # Spreadsheets save trailing columns with no name and no values (a header ending in ',,'): not data.
    width = len(columns)
    while width and not columns[width - 1].strip():
        width -= 1
    columns = columns[:width]
    other = next((sep for sep in ";\t|" if width == 1 and sep in columns[0]), None)
    if other:
        raise InputError(source, 0, None, f"the header is one column, {columns[0]!r}: the file looks separated "
                                          f"by {other!r}, and {suffix} files use " + ("tabs" if suffix == ".tsv"
                                                                                      else "commas"))
    _unique_columns(source, columns)
    rows = []
    for fields in reader:
        if not any(f.strip() for f in fields):  # a blank line, or a spreadsheet's empty row (',,,')
            continue
        if len(fields) > width and not any(f.strip() for f in fields[width:]):
            fields = fields[:width]
        if len(fields) != width:
            raise InputError(source, len(rows) + 1, None, f"{len(fields)} fields, but the header has {width} columns")
        rows.append(dict(zip(columns, fields)))
    if not rows:
        raise InputError(source, 1, None, "header only, no data rows")
    return rows, columns


def _json_rows(source: str, text: str, suffix: str) -> tuple[list[dict], list[str]]:
    """JSON Lines, or in a .json file also one JSON array of objects (what pandas' to_json writes)."""
    array = suffix == ".json" and text.lstrip().startswith("[")
    if array:
        try:
            items = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except _DuplicateKey as err:
            raise InputError(source, None, err.args[0], "duplicate key (JSON would keep only the last)") from None
        except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError; so is a 5000-digit number
            raise InputError(source, None, None, f"not valid JSON ({getattr(err, 'msg', None) or err})") from None
        if not isinstance(items, list):
            raise InputError(source, None, None, "not valid JSON")
        numbered = list(enumerate(items, start=1))
    else:
        numbered = []
        # Only '\n' ends a JSON line: splitlines() would also split strings holding U+2028 or NEL.
        for n, line in enumerate((x for x in text.split("\n") if x.strip()), start=1):
            try:
                numbered.append((n, json.loads(line, object_pairs_hook=_no_duplicate_keys)))
            except _DuplicateKey as err:
                raise InputError(source, n, err.args[0], "duplicate key (JSON would keep only the last)") from None
            except (ValueError, RecursionError) as err:
                hint = " (a .json file holds JSON Lines, one object per line, or one array of objects)" \
                    if suffix == ".json" and n == 1 else ""
                raise InputError(source, n, None,
                                 f"not valid JSON ({getattr(err, 'msg', None) or err}){hint}") from None
    rows, columns = [], []
    for n, row in numbered:
        if not isinstance(row, dict):
            raise InputError(source, n, None, f"each {'item' if array else 'line'} must be a JSON object")
        rows.append(row)
        columns += [c for c in row if c not in columns]
    if not rows:
        raise InputError(source, 1, None, "no data rows")
    return rows, columns


class _DuplicateKey(Exception):
    pass


def _no_duplicate_keys(pairs: list) -> dict:
    row = {}
    for key, value in pairs:
        if key in row:
            raise _DuplicateKey(key)
        row[key] = value
    return row


def _unique_columns(source: str, columns: list[str]) -> None:
    for i, name in enumerate(columns):
        if _SURROGATE.search(name):
            raise InputError(source, 0, name, "undecodable bytes (the file is not UTF-8)")
        if name in columns[:i]:
            raise InputError(source, 0, name, f"duplicate column name (columns {columns.index(name) + 1} and "
                                              f"{i + 1}); only one of them would be read")


def _read_hf(source: str) -> tuple[list[dict], list[str]]:
    import datasets  # slow import, only when asked for

    name, _, split = source[3:].partition(":")
    local = os.path.lexists(name)  # a broken local directory is reported, not looked up on the hub
    problem = local and path_problem(name, directory=True)
    if problem:
        raise InputError(source, None, None, problem)
    try:
        if local:
            ds = datasets.load_from_disk(name)
        else:  # a hub id: the user named it, so a download is what they asked for
            ds = datasets.load_dataset(name, split=split or "train")
    except Exception as err:
        raise InputError(source, None, None, f"cannot load dataset ({err})") from None
    if isinstance(ds, datasets.DatasetDict):
        if (split or "train") not in ds:
            raise InputError(source, None, None, f"no split {split!r}; has {list(ds)}")
        ds = ds[split or "train"]
    if len(ds) == 0:
        raise InputError(source, 1, None, "no data rows")
    return ds.to_list(), list(ds.column_names)


def _options(value, source: str, row: int, col: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, an over-long number, absurd nesting
            raise InputError(source, row, col, "options must be a JSON list of strings") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(o, (str, int, float)) for o in value):
        raise InputError(source, row, col, "options must be a list of strings")
    if not 2 <= len(value) <= len(LETTERS):
        raise InputError(source, row, col, f"a choice needs 2 to {len(LETTERS)} options, got {len(value)}")
    value = [str(o).strip() for o in value]
    if any(not o for o in value):
        raise InputError(source, row, col, "an option is empty")
    return value


def _choice(text: str, options: list[str], source: str, row: int, col: str, notes: dict) -> str:
    """The letter a gold answer names. It may be written as a letter ('B', '(b)'), which is the format and wins
    (ARC has options whose text is a letter: 'C' for carbon), or as a 1-based option number (an upstream quirk of
    ARC) or as an option's text; a number that both of these would map to different options is an error, never a
    guess."""
    bare = text.strip("().[] ")
    if len(bare) == 1 and bare.upper() in LETTERS[: len(options)]:
        return bare.upper()
    readings = {}
    # ASCII only: str.isdigit() accepts '²' and '①', which int() refuses.
    if bare.isascii() and bare.isdigit() and len(bare) <= 3 and 1 <= int(bare) <= len(options):
        readings["an option number"] = LETTERS[int(bare) - 1]
    texts = [i for i, o in enumerate(options) if answer_key(text) and answer_key(o) == answer_key(text)]
    if len(texts) == 1:
        readings["an option's text"] = LETTERS[texts[0]]
    if len(set(readings.values())) > 1:
        ways = "; ".join(f"as {how} it is {letter} ({options[LETTERS.index(letter)]!r})"
                         for how, letter in readings.items())
        raise InputError(source, row, col, f"answer {text!r} is ambiguous: {ways}; write the option's letter")
    if not readings:
        hint = (" (option numbers count from 1; a 0 suggests this file counts from 0: write letters instead)"
                if bare.isascii() and bare.isdigit() and int(bare[:4]) == 0 else
                " (a letter, a 1-based option number or an option's text)")
        raise InputError(source, row, col,
                         f"answer {text!r} is not a letter within the {len(options)} options{hint}")
    how, letter = next(iter(readings.items()))
    # Mapped and counted, not hidden.
    note = ("digit answers mapped to letters" if how == "an option number"
            else "answers given as option text mapped to letters")
    notes[note] = notes.get(note, 0) + 1
    return letter


def _answer(value, task: str, options: list[str], source: str, row: int, col: str, notes: dict) -> str:
    text = str(value).strip()
    if task == "choice":
        return _choice(text, options, source, row, col, notes)
    if task == "number":
        number = parse_number(text, whole=True)
        if number is None:
            raise InputError(source, row, col, f"answer {text!r} is not a finite number")
        return format_number(number)
    for label in options:
        if answer_key(text) == answer_key(label):  # as a model's answer is matched
            return label
    raise InputError(source, row, col, f"answer {text!r} is not one of the labels {options}")


def load_dataset(source: str, task: str = "choice", columns: Columns | None = None,
                 labels: list[str] | None = None, require_answers: bool = False,
                 max_question_chars: int = 20_000) -> Dataset:
    """Loads and validates one split. require_answers: every row must carry an answer (labeled, test).
    A question longer than max_question_chars is an error: it could not fit a prompt, and truncating it
    silently would train on a different question."""
    columns = columns or Columns()
    rows, present = _read_rows(str(source))
    source = str(source)
    needed = [columns.question] + ([columns.options] if task == "choice" else [])
    needed += [columns.answer] if require_answers else []
    needed += [c for c in [columns.id, columns.category, *columns.metadata] if c]
    for col in needed:
        if col not in present:
            raise InputError(source, 0, col, f"missing column (found: {', '.join(map(str, present))})")
    id_col = columns.id or ("id" if "id" in present else None)
    records, seen, notes = [], {}, {}
    for n, row in enumerate(rows, start=1):
        for key, value in row.items():
            if isinstance(value, str) and _SURROGATE.search(value):
                raise InputError(source, n, key, "undecodable bytes (the file is not UTF-8)")
        rid = str(row.get(id_col)).strip() if id_col else str(n)
        if id_col and _missing(row.get(id_col)):
            raise InputError(source, n, id_col, "empty id")
        if rid in seen:
            raise InputError(source, n, id_col or "id", f"duplicate id {rid!r} (first at row {seen[rid]})")
        seen[rid] = n
        question = row.get(columns.question)
        if not isinstance(question, str) and not _missing(question):
            raise InputError(source, n, columns.question,
                             f"question must be text, not {type(question).__name__} (wrong column?)")
        if _missing(question):
            raise InputError(source, n, columns.question, "empty question")
        if len(question) > max_question_chars:
            raise InputError(source, n, columns.question, f"question has {len(question)} characters; the limit "
                                                          f"is data.max_question_chars={max_question_chars}")
        if task == "choice":
            options = _options(row.get(columns.options), source, n, columns.options)
        elif task == "label":
            options = list(labels or [])
        else:
            options = None
        value = row.get(columns.answer)
        if _missing(value):
            if require_answers:
                raise InputError(source, n, columns.answer, "missing answer in a split that needs answers")
            answer = None
        else:
            answer = _answer(value, task, options, source, n, columns.answer, notes)
        category = None if not columns.category or _missing(row.get(columns.category)) else str(
            row[columns.category])
        meta = {c: row.get(c) for c in columns.metadata}
        records.append(Record(rid, question, options, answer, category, meta))
    return Dataset(source, task, records, fingerprint(task, records),
                   [f"{k}: {v}" for k, v in notes.items()], ids_from_rows=id_col is None)


def question_id(record: Record) -> str:
    """An id made from what the question is (its text and options), for rows whose file gives them none."""
    text = json.dumps([record.question, record.options], ensure_ascii=False)
    return "q-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(task: str, records: list[Record]) -> str:
    """Content hash of the mapped records: the same data in another file format hashes the same."""
    h = hashlib.sha256(task.encode())
    for r in records:
        h.update(json.dumps(asdict(r), sort_keys=True, default=str).encode())
    return h.hexdigest()


def subsample(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    """A fixed seeded subsample, in file order; every method that uses the same seed sees the same rows."""
    if limit is None or limit >= len(ds):
        return ds
    keep = sorted(random.Random(seed).sample(range(len(ds)), limit))
    records = [ds.records[i] for i in keep]
    return Dataset(ds.source, ds.task, records, fingerprint(ds.task, records), ds.notes, ds.ids_from_rows)


def question_key(record: Record) -> str:
    """What makes two records the same question, whatever their ids and answers (and the question's case and
    spacing)."""
    return answer_key(record.question) + "\0" + json.dumps(record.options)


def _question_keys(ds: Dataset) -> set[str]:
    return {question_key(r) for r in ds.records}


def _overlap(role: str, ds: Dataset, other_role: str, other: Dataset) -> None:
    """A few questions shared between splits is how published splits are (FPB's share 3), and is noted; a
    split mostly made of another's questions is a mistake (the labeled file again with its answers removed, the
    test split pointed at the training file) that would make the round measure nothing, and is an error."""
    mine = _question_keys(ds)
    shared = len(mine & _question_keys(other))
    if not shared:
        return
    if shared * 2 >= len(mine):
        raise InputError(ds.source, None, f"data.{role}",
                         f"{shared} of its {len(mine)} questions are also in data.{other_role} ({other.source}); "
                         f"the {role} split must be other questions")
    ds.notes.append(f"{shared} of its questions also in the {other_role} split")


def load_splits(cfg: DataConfig) -> dict[str, Dataset]:
    """labeled, unlabeled and (optional) test, validated and subsampled; raises before anything is written."""
    out, unsampled = {}, {}
    for role in ("labeled", "unlabeled", "test"):
        source = getattr(cfg, role)
        if source is None:
            continue
        try:
            ds = load_dataset(source, cfg.task, cfg.columns, cfg.labels, require_answers=role != "unlabeled",
                              max_question_chars=cfg.max_question_chars)
        except InputError as err:
            if err.field is None:  # a file- or line-level problem: name the config key
                raise InputError(err.file, err.row, f"data.{role}", err.problem) from None
            raise
        if role == "unlabeled" and ds.fingerprint == unsampled["labeled"].fingerprint:
            # The same file (or a copy): every pseudo-label would be for a question whose answer is known.
            raise InputError(source, None, "data.unlabeled", "holds the same records as data.labeled (the same "
                                                             "file?); unlabeled data must be other questions")
        for other_role, other in unsampled.items():
            _overlap(role, ds, other_role, other)
        unsampled[role] = ds
        out[role] = subsample(ds, getattr(cfg, f"limit_{role}"), cfg.sample_seed)
    return out
