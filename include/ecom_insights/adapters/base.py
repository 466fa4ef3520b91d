"""What every converter shares: reading an export in chunks, parsing its values, the scratch
store that groups rows whatever their order, and writing the contract's files.

The converters stream: an export is read `CHUNK_BYTES` at a time, each chunk is checked
and its kept rows are written as a Parquet file; orders, sessions, customers and products are
then grouped by SQL in DuckDB over those files, which spills to disk beyond `MEMORY_LIMIT`.
Memory is bounded by the chunk and the limit, not by the export, and no assumption is made on
the order of the rows: the lines of one order may be anywhere in the file, or in several
files.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ecom_insights.adapters import ConvertError
from ecom_insights.contract import SOURCES

# Text of the export read at once: some 100,000 order lines. With the memory limit below, a
# conversion peaks at about 1.3 GB whatever the size of the export (docs/bring-your-own-data.md).
CHUNK_BYTES = 8 << 20
# DuckDB's working memory; past it, grouping and sorting spill to the scratch directory.
MEMORY_LIMIT = "1GB"
# Money is kept exactly in the scratch store: amounts up to 10^12 with 6 decimals, as the
# contract's money columns allow, before rounding to 2 places when written.
MONEY_SQL_TYPE = "decimal(18,6)"
MAX_AMOUNT = 1e12

SUMMARY_FILE = "convert_summary.json"
# rows per file in the `seq` numbering (see `sequence`): a file may hold up to 10^12 rows
SEQ_FILE_STRIDE = 10**12
ARROW_TEXT = pd.StringDtype("pyarrow")
WHITESPACE = "whitespace"


@dataclass(frozen=True)
class Dialect:
    """How the export's text is laid out."""

    delimiter: str = ","  # one character, or "whitespace" for runs of spaces and tabs
    encoding: str = "utf-8"
    header: bool = True
    names: tuple[str, ...] = ()  # the column names, for a file without a header row


@dataclass
class ConvertSummary:
    """What a conversion read, kept, skipped (by reason) and wrote."""

    format: str
    sources: list[str]
    out_dir: str
    rows_read: int = 0
    rows_kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    written: dict[str, int] = field(default_factory=dict)
    figures: dict[str, int | float | str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        lines = [
            f"ecom convert {self.format}: {', '.join(self.sources)}",
            f"  rows read    {self.rows_read:>14,}",
            f"  rows kept    {self.rows_kept:>14,}",
            f"  rows skipped {sum(self.skipped.values()):>14,}",
        ]
        lines += [f"    {n:>12,}  {reason}" for reason, n in self.skipped.most_common()]
        lines.append(f"  written to {self.out_dir}")
        lines += [f"    {name:<16} {n:>12,} rows" for name, n in self.written.items()]
        lines.append("  figures")
        for name, value in self.figures.items():
            if isinstance(value, float):
                shown = f"{value:,.2f}"
            else:
                shown = f"{value:,}" if isinstance(value, int) else str(value)
            lines.append(f"    {name:<24} {shown:>16}")
        lines += [f"  note: {note}" for note in self.notes]
        lines.append(f"  took {self.seconds:.1f} s")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "sources": self.sources,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_skipped": dict(self.skipped.most_common()),
            "written": self.written,
            "figures": self.figures,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


# ---------------------------------------------------------------------------------------------
# reading


def read_header(path: Path, dialect: Dialect) -> list[str]:
    """The export's column names (spaces around a name ignored)."""
    if not path.is_file():
        raise ConvertError(path, "no such file")
    if not dialect.header:
        return list(dialect.names)
    return [name.strip() for name in _header_as_written(path, dialect)]


def require_columns(path: Path, header: list[str], wanted: dict[str, str]) -> None:
    """`wanted` maps a role (the customer id, ...) to the column mapped to it."""
    for role, column in wanted.items():
        if column not in header:
            raise ConvertError(
                path,
                f"mapped as {role}, but not in the header (the columns are: {', '.join(header)})",
                column=column,
            )


def read_chunks(
    path: Path, dialect: Dialect, columns: list[str], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pd.DataFrame]:
    """The file's `columns` as text (trimmed, '' when empty), about `chunk_bytes` of the file
    at a time, with each row's number in a `_row` column (1 = the first row after the header).
    A row with more or fewer fields than the header is an error."""
    if dialect.delimiter == WHITESPACE:
        batches = _whitespace_batches(path, dialect, chunk_bytes)
    else:
        batches = _delimited_batches(path, dialect, columns, chunk_bytes)
    first_row = 1
    for batch in batches:
        # Arrow-backed strings: trimming, matching and comparing run in pyarrow's kernels
        chunk = pd.DataFrame({name: batch[name].astype(ARROW_TEXT).str.strip() for name in columns})
        chunk["_row"] = range(first_row, first_row + len(chunk))
        first_row += len(chunk)
        yield chunk


def _header_as_written(path: Path, dialect: Dialect) -> list[str]:
    if dialect.delimiter == WHITESPACE:
        with _reading(path, dialect):
            return [str(c) for c in pd.read_csv(path, nrows=0, **_whitespace_options(dialect))]
    with _reading(path, dialect):
        return _arrow_reader(path, dialect, None, 1 << 20).schema.names


def _delimited_batches(path, dialect, columns, chunk_bytes) -> Iterator[pd.DataFrame]:
    """pyarrow's streaming CSV reader: RFC 4180 quoting, gzip, any encoding Python knows."""
    if len(dialect.delimiter) != 1:
        raise ConvertError(path, f"the delimiter is one character: {dialect.delimiter!r}")
    as_written = (
        {name.strip(): name for name in _header_as_written(path, dialect)}
        if dialect.header
        else {name: name for name in dialect.names}
    )
    include = [as_written[c] for c in columns]
    with _reading(path, dialect):
        for batch in _arrow_reader(path, dialect, include, chunk_bytes):
            frame = batch.to_pandas(types_mapper={pa.string(): ARROW_TEXT}.get)
            yield frame.rename(columns={v: k for k, v in as_written.items()})


def _arrow_reader(path: Path, dialect: Dialect, include: list[str] | None, block_bytes: int):
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            block_size=block_bytes,
            encoding=dialect.encoding,
            column_names=None if dialect.header else list(dialect.names),
        ),
        parse_options=pacsv.ParseOptions(delimiter=dialect.delimiter, newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            include_columns=include,
            column_types={name: pa.string() for name in include or []},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _whitespace_batches(path, dialect, chunk_bytes) -> Iterator[pd.DataFrame]:
    """pandas' reader, for fields separated by runs of spaces (which pyarrow does not read)."""
    options = _whitespace_options(dialect)
    if not dialect.header:
        options.update(header=None, names=list(dialect.names))
    # a whitespace-separated log line is short: about 32 bytes
    with _reading(path, dialect):
        reader = pd.read_csv(path, chunksize=max(1, chunk_bytes // 32), **options)
        for frame in reader:
            yield frame.rename(columns=lambda name: str(name).strip())


def _whitespace_options(dialect: Dialect) -> dict:
    return {
        "sep": r"\s+",
        "encoding": dialect.encoding,
        "dtype": str,
        "keep_default_na": False,
        "na_filter": False,
        "compression": "infer",
    }


@contextmanager
def _reading(path: Path, dialect: Dialect) -> Iterator[None]:
    """Turns the readers' failures into a ConvertError that names the file (and the row)."""
    try:
        yield
    except (pd.errors.EmptyDataError, pa.ArrowInvalid) as error:
        message = str(error)
        if isinstance(error, pd.errors.EmptyDataError) or message == "Empty CSV file":
            raise ConvertError(path, "empty file: no header row") from error
        if "invalid UTF8" in message:
            raise ConvertError(path, f"unreadable file: not {dialect.encoding} text") from error
        ragged = _first_ragged_row(path, dialect)
        if ragged:
            row, fields, width = ragged
            rule = f"unreadable CSV: {fields} fields where the header has {width}"
            raise ConvertError(path, rule, row=row) from error
        raise ConvertError(path, f"unreadable CSV: {message}") from error
    except pd.errors.ParserError as error:
        message = str(error).strip().removeprefix("Error tokenizing data. C error: ")
        raise ConvertError(path, f"unreadable CSV: {message.rstrip('.')}") from error
    except UnicodeDecodeError as error:
        raise ConvertError(path, f"unreadable file: not {dialect.encoding} text") from error
    except (OSError, EOFError) as error:  # not gzip, or a truncated archive
        raise ConvertError(path, f"unreadable file ({error})") from error


def _first_ragged_row(path: Path, dialect: Dialect) -> tuple[int, int, int] | None:
    """(row number, fields, header fields) of the first row whose field count differs from
    the header's: pyarrow's message shows the row but not its number, so the file is read
    again, once, when it has failed."""
    opener = gzip.open if path.suffix == ".gz" else open
    width = None if dialect.header else len(dialect.names)
    row = 0
    with opener(path, "rt", encoding=dialect.encoding, newline="") as handle:
        for record in csv.reader(handle, delimiter=dialect.delimiter):
            if not record:
                continue  # empty lines are skipped by the reader too
            if width is None:
                width = len(record)
                continue
            row += 1
            if len(record) != width:
                return row, len(record), width
    return None


# ---------------------------------------------------------------------------------------------
# parsing values


def parse_timestamps(
    path: Path,
    chunk: pd.DataFrame,
    column: str,
    timestamp_format: str | None,
    *,
    allow_empty: bool = False,
) -> pd.Series:
    """Timestamps without a zone: a time with an offset is converted to UTC, a time without
    one is kept as it is. An unparseable value is an error; so is an empty one unless
    `allow_empty` (then NaT)."""
    text = chunk[column]
    parsed = pd.to_datetime(text, format=timestamp_format or "ISO8601", errors="coerce", utc=True)
    bad = parsed.isna() & ~((text == "") & allow_empty)
    if bad.any():
        first = int(bad.to_numpy().argmax())
        expected = f"format {timestamp_format!r}" if timestamp_format else "ISO 8601"
        value = text.iloc[first]
        rule = f"not a timestamp in {expected}: {value[:40]!r}" if value else "empty timestamp"
        raise ConvertError(path, rule, row=int(chunk["_row"].iloc[first]), column=column)
    return parsed.dt.tz_localize(None)


def parse_numbers(
    path: Path, chunk: pd.DataFrame, column: str, *, allow_empty: bool = False
) -> pd.Series:
    """Decimal numbers ('12', '12.5', '-1e3'); thousands separators, decimal commas, currency
    symbols, NaN and infinities are errors. Empty is NaN when `allow_empty`, else an error."""
    text = chunk[column]
    empty = text == ""
    try:  # pyarrow's cast is some 15 times faster than pandas' to_numeric, but stops at the
        # first bad value without saying where: pandas then finds it
        arrow = pc.if_else(pa.array(empty), pa.scalar(None, pa.string()), pa.array(text))
        numbers = pd.Series(pc.cast(arrow, pa.float64()).to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:
        numbers = pd.to_numeric(text, errors="coerce")
    numbers.index = text.index
    bad = (numbers.isna() | (numbers.abs() >= MAX_AMOUNT)) & ~(empty & allow_empty)
    if bad.any():
        first = int(bad.to_numpy().argmax())
        value = text.iloc[first]
        if not value:
            rule = "empty value"
        elif pd.isna(numbers.iloc[first]):
            rule = f"not a number: {value[:40]!r}"
        else:
            rule = f"out of range (at most {MAX_AMOUNT:.0e} in absolute value): {value[:40]!r}"
        raise ConvertError(path, rule, row=int(chunk["_row"].iloc[first]), column=column)
    return numbers.astype("float64")


def normalise_ids(values: pd.Series) -> pd.Series:
    """An integer id written as a float ('17850.0', as a spreadsheet or pandas writes an
    integer column with blanks) is the integer's text ('17850')."""
    arrow = pa.array(values)
    whole = pc.match_substring_regex(arrow, r"^-?\d+\.0+$")
    trimmed = pc.if_else(whole, pc.replace_substring_regex(arrow, r"\.0+$", ""), arrow)
    return pd.Series(trimmed, index=values.index, dtype=ARROW_TEXT)


# ---------------------------------------------------------------------------------------------
# the scratch store and the output directory


@dataclass
class Scratch:
    """A conversion's working space, inside a hidden directory of the output directory that
    is removed afterwards: `con` a DuckDB database, `staged` where the output files are
    written before they are published."""

    con: duckdb.DuckDBPyConnection
    directory: Path
    staged: Path

    def stage(self, name: str, schema) -> Stage:
        return Stage(self.con, self.directory / name, name, schema)


class Stage:
    """Rows appended chunk by chunk as Parquet files, which DuckDB reads as the view `name`.
    Parquet, not inserts into a DuckDB table: writing a chunk costs a third of inserting it,
    and DuckDB scans the files in parallel, spilling to disk when it groups or sorts them."""

    def __init__(self, con, directory: Path, name: str, schema):
        self.directory = directory
        self.schema = schema
        self.parts = 0
        directory.mkdir()
        self.append(pd.DataFrame())  # an empty part: the view has its columns from the start
        timestamps = [f.name for f in schema if str(f.type).startswith("timestamp")]
        # DuckDB reads pandas' nanosecond times as timestamp_ns; the SQL works in timestamp
        replace = ", ".join(f"{c}::timestamp as {c}" for c in timestamps)
        con.execute(
            f"create view {name} as select * {f'replace ({replace})' if replace else ''} "
            f"from read_parquet({sql_text(directory / '*.parquet')})"
        )

    def append(self, frame: pd.DataFrame) -> None:
        """Append the frame's rows; a column of the schema that it lacks is NULL."""
        rows = len(frame)
        columns = [
            pa.array(frame[f.name], type=f.type, from_pandas=True)
            if f.name in frame
            else pa.nulls(rows, f.type)
            for f in self.schema
        ]
        pq.write_table(
            pa.Table.from_arrays(columns, schema=self.schema),
            self.directory / f"part-{self.parts:06d}.parquet",
        )
        self.parts += 1


@contextmanager
def scratch_space(out_dir: Path, memory_limit: str = MEMORY_LIMIT) -> Iterator[Scratch]:
    """The working space of one conversion; `out_dir` is left as it was if the conversion
    fails (made, then removed again, if it did not exist)."""
    made = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=".ecom-convert-", dir=out_dir))
    try:
        con = duckdb.connect(str(directory / "store.duckdb"))
        try:
            try:
                con.execute(f"set memory_limit = {sql_text(memory_limit)}")
            except duckdb.Error as error:
                raise ConvertError("--memory-limit", f"not a memory size ({error})") from error
            con.execute(f"set temp_directory = {sql_text(directory / 'spill')}")
            con.execute("set preserve_insertion_order = false")
            # one sortable number for "when, then where in the export": the same order, and so
            # the same output, on every run (seq = file index x 10^12 + row number)
            con.execute(
                "create macro moment(t, seq) as "
                "epoch_us(t)::hugeint * 1000000000000000::hugeint + seq"
            )
            staged = directory / "out"
            staged.mkdir()
            yield Scratch(con, directory, staged)
        finally:
            con.close()
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        if made:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)


def sql_text(value) -> str:
    """A string literal for DuckDB (paths chosen by the user may hold a quote)."""
    return "'" + str(value).replace("'", "''") + "'"


def sequence(file_index: int, rows: pd.Series) -> pd.Series:
    """Where a row is in the export, as one number that sorts in file then row order."""
    return file_index * SEQ_FILE_STRIDE + rows.astype("int64")


def write_csv(con, query: str, path: Path) -> int:
    """Write a query's rows as a contract CSV (header, comma, RFC 4180 quoting, NULL as empty,
    ISO 8601 dates); returns the number of rows written."""
    (written,) = con.execute(
        f"copy ({query}) to {sql_text(path)} "
        "(format csv, header true, timestampformat '%Y-%m-%d %H:%M:%S')"
    ).fetchone()
    return int(written)


def existing_inputs(out_dir: Path) -> list[Path]:
    """Files in `out_dir` that the ingestion would read, and an earlier conversion's summary."""
    if not out_dir.is_dir():
        return []
    patterns = [re.compile(rf"^{s.name}(_[^/]*)?\.csv(\.gz)?$") for s in SOURCES]
    return sorted(
        p
        for p in out_dir.iterdir()
        if p.is_file() and (p.name == SUMMARY_FILE or any(x.match(p.name) for x in patterns))
    )


def check_out_dir(out_dir: Path, force: bool) -> None:
    """A conversion never mixes its files with other input files: the ingestion would load
    them together (say, events of another export whose sessions are gone)."""
    found = existing_inputs(out_dir)
    if found and not force:
        names = ", ".join(p.name for p in found)
        raise ConvertError(
            out_dir,
            f"already holds input files ({names}): choose an empty directory, "
            "or pass --force to replace them",
        )


def publish(staged: Path, out_dir: Path, summary: ConvertSummary) -> None:
    """Move the finished files into `out_dir`, replacing input files left there before."""
    for old in existing_inputs(out_dir):
        old.unlink()
    for path in sorted(staged.iterdir()):
        os.replace(path, out_dir / path.name)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")


class Stopwatch:
    """Seconds since it was made (the summary's `took`)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
