"""Ingestion: landed files -> staging (screened rows) or raw -> row rules -> audit -> core.

The steps are separate functions so that the ingestion DAG can run, retry and show each one:

1. `land_files`: every contract file in the landing directory is checked as a whole (readable,
   a header with the required columns, no column of the wrong type throughout) and read once
   with pyarrow: rows in canonical form that break no rule of their own are COPY'd into the
   typed `staging.<source>`, the others as text into `raw.<source>`, with file name and row
   number. A file that fails is rejected whole: nothing of it is loaded and `raw.load_log`
   says which column and rule.
2. `apply_row_rules`: the rows in raw are cast and checked in one set-based statement per
   source, as are staging's rows whose parent is missing or whose key repeats (their text
   read again from the file); rows that break a rule go to `raw.quarantine` with file, row
   number, every reason and the original text, the others to staging.
3. `merge_into_core_once_audited`: staging rows are upserted into `core.<source>` by business
   key while Great Expectations audits staging (`ecom_insights.validation`); the merge
   commits only if the audit passed. A first load (core empty) adopts staging's table as
   core's, once the audit passed, instead of writing every row a second time.

Re-running the same files leaves every table as it was: raw and staging are rebuilt from the
files, quarantine rows are replaced per file, core rows are upserted and only changed rows
are rewritten, and `raw.load_log` keeps the run that first loaded a file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from psycopg2 import sql

from ecom_insights.contract import EVENT_TYPES, SOURCES, SOURCES_BY_NAME, Column, Source

log = logging.getLogger(__name__)

DDL_PATH = Path(__file__).resolve().parent.parent / "sql" / "ddl" / "warehouse.sql"

# A column is "wrong type throughout" (the file is rejected) when it has at least this many
# non-empty values and none of them parses; with fewer, the bad values are quarantined as rows.
WRONG_TYPE_MIN_VALUES = 2

# Memory per hash (PostgreSQL's work_mem) for the row rules' parent lookups and the search
# for duplicated keys, which hash rather than sort. Index builds keep the default memory: in
# the database's C.UTF-8 collation a sort of millions of keys in memory ran slower than an
# external merge (EXPLAIN ANALYZE: 34 s against 22 s for GX's uniqueness window over the
# events), and with the ids in "C" 256 MB gained nothing measurable.
ROW_RULES_WORK_MEM = "256MB"

TRUE_WORDS = ("true", "t", "1", "yes", "y")
FALSE_WORDS = ("false", "f", "0", "no", "n")


class FileRejected(Exception):
    """A whole file is unusable: the message names the file, the column and the rule."""

    def __init__(self, path: Path | str, column: str | None, rule: str):
        self.path = str(path)
        self.column = column
        self.rule = rule
        where = f"column {column!r}: " if column else ""
        super().__init__(f"{Path(self.path).name}: {where}{rule}")


class NoInputFiles(Exception):
    """The landing directory holds no file that the data contract knows."""


class NoNewFiles(NoInputFiles):
    """Every file in the landing directory was loaded before."""


@dataclass
class FileResult:
    source: str
    path: str
    sha256: str
    status: str  # landed | rejected | skipped
    rows_read: int = 0
    message: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# discovery and file-level checks


def discover_files(data_dir: Path) -> list[tuple[Source, Path]]:
    """Contract files in `data_dir`, parents first: `<source>[_*].csv[.gz]`, sorted by name."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"landing directory {data_dir} does not exist")
    found: list[tuple[Source, Path]] = []
    for source in SOURCES:
        pattern = re.compile(rf"^{source.name}(_[^/]*)?\.csv(\.gz)?$")
        paths = sorted(p for p in data_dir.iterdir() if p.is_file() and pattern.match(p.name))
        found.extend((source, p) for p in paths)
    if not found:
        expected = ", ".join(f"{s.name}.csv" for s in SOURCES)
        raise NoInputFiles(f"no input files in {data_dir} (expected any of: {expected})")
    return found


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_header(path: Path, source: Source) -> list[str]:
    """The file's column names, after checking them against the contract."""
    try:
        with _open_binary(path) as handle:
            first_line = handle.readline(1 << 20)
    except (OSError, EOFError) as error:
        raise FileRejected(path, None, f"unreadable file ({error})") from error
    if b"\x00" in first_line:
        raise FileRejected(path, None, "unreadable file: binary content, not CSV text")
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileRejected(path, None, "unreadable file: header is not UTF-8 text") from error
    if not text.strip():
        raise FileRejected(path, None, "empty file: no header row")
    header = [name.strip() for name in next(csv.reader(io.StringIO(text)))]
    if any(not name for name in header):
        raise FileRejected(path, None, "header has an empty column name")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise FileRejected(path, duplicated[0], "column appears more than once in the header")
    missing = [name for name in source.required_columns if name not in header]
    if missing:
        raise FileRejected(path, missing[0], "required column is missing from the header")
    return header


# ---------------------------------------------------------------------------------------------
# SQL building blocks


def ensure_schema(conn) -> None:
    """Create schemas and tables up to core (idempotent). The raw tables hold only the batch
    being landed, so they are made anew, in the contract's current shape."""
    with conn.cursor() as cur:
        # per batch like raw.<source>: made anew in the current shape before the DDL runs
        cur.execute("drop table if exists raw.batch_files")
        cur.execute(DDL_PATH.read_text())
        for source in SOURCES:
            columns = [sql.SQL("{} text").format(sql.Identifier(c.name)) for c in source.columns]
            columns += [
                # the file's hash is in raw.batch_files: 64 bytes less to write and read per row
                sql.SQL("_file text not null"),
                # numbered by COPY in file order; restarted at 1 for each file
                sql.SQL("_row_number bigint generated by default as identity"),
            ]
            table = sql.Identifier("raw", source.name)
            cur.execute(sql.SQL("drop table if exists {}").format(table))
            cur.execute(
                sql.SQL("create unlogged table {} ({})").format(table, sql.SQL(", ").join(columns))
            )


def _validity_function(conn) -> str:
    """pg_input_is_valid on PostgreSQL 16+, else the stand-in from warehouse.sql."""
    return "pg_input_is_valid" if conn.server_version >= 160000 else "raw.input_is_valid"


def _value(column: str, alias: str | None = None, *, trimmed: bool = False) -> sql.Composable:
    """The trimmed text of a raw column, NULL when empty (`trimmed`: the column already is)."""
    name = sql.Identifier(alias, column) if alias else sql.Identifier(column)
    return name if trimmed else sql.SQL("nullif(btrim({}), '')").format(name)


def _is_valid(
    column: Column, is_valid: str, alias: str | None = None, *, trimmed: bool = False
) -> sql.Composable:
    """SQL that is true when the column's (non-empty) text parses as its kind."""
    v = _value(column.name, alias, trimmed=trimmed)
    check = sql.SQL(is_valid)
    if column.kind == "text":
        return sql.SQL("true")
    if column.kind == "boolean":
        return sql.SQL("lower({}) = any({})").format(v, sql.Literal(list(TRUE_WORDS + FALSE_WORDS)))
    # 'NaN', 'inf' and 'Infinity' parse as numbers in PostgreSQL but are no amount or
    # duration; no other number has an 'n' (strpos: several times cheaper than a regex)
    no_n = sql.SQL("strpos({v}, 'n') = 0 and strpos({v}, 'N') = 0").format(v=v)
    if column.kind == "integer":
        return sql.SQL(
            "case when {check}({v}, 'numeric') and {no_n} "
            "then mod({v}::numeric, 1) = 0 and abs({v}::numeric) < 2147483648 else false end"
        ).format(check=check, v=v, no_n=no_n)
    if column.kind in ("number", "money"):
        type_name = "numeric(14,2)" if column.kind == "money" else "double precision"
        return sql.SQL("({check}({v}, {t}) and {no_n})").format(
            check=check, v=v, t=sql.Literal(type_name), no_n=no_n
        )
    if column.kind in ("date", "timestamp"):
        # a leading digit (code 48 to 57) rules out PostgreSQL's special words ('now',
        # 'today', 'infinity'); ascii() is several times cheaper than a regex
        return sql.SQL("(ascii({v}) between 48 and 57 and {check}({v}, 'timestamp'))").format(
            check=check, v=v
        )
    raise ValueError(f"unknown column kind {column.kind!r}")


def _typed(
    column: Column, raw_name: str, alias: str | None = None, *, trimmed: bool = False
) -> sql.Composable:
    """SQL casting the (valid, non-empty) text in column `raw_name` to the column's type."""
    v = _value(raw_name, alias, trimmed=trimmed)
    casts = {
        "text": "{v}",
        "boolean": "(lower({v}) = any({true}))",
        "integer": "{v}::numeric::integer",
        "number": "{v}::double precision",
        "money": "round({v}::numeric, 2)",
        "date": "{v}::timestamp::date",
        "timestamp": "{v}::timestamp",
    }
    return sql.SQL(casts[column.kind]).format(v=v, true=sql.Literal(list(TRUE_WORDS)))


def _row_rules(source: Source) -> list[tuple[str, str]]:
    """(condition over typed columns `t.<col>`, reason) pairs beyond types and emptiness."""
    rules: dict[str, list[tuple[str, str]]] = {
        "customers": [("t.age not between 0 and 120", "age: must be between 0 and 120")],
        "sessions": [
            ("t.browsing_time_sec < 0", "browsing_time_sec: must be >= 0"),
            ("t.purchase_amount < 0", "purchase_amount: must be >= 0"),
            (
                "not t.purchase_made and t.purchase_amount > 0",
                "purchase_amount: positive while purchase_made is false",
            ),
            (
                "t.purchase_made and t.purchase_amount__empty",
                "purchase_amount: empty while purchase_made is true",
            ),
            ("t.pages_viewed < 0", "pages_viewed: must be >= 0"),
            ("t.discount_amount < 0", "discount_amount: must be >= 0"),
        ],
        "products": [("t.price < 0", "price: must be >= 0")],
        "events": [
            (
                f"t.event_type not in ({', '.join(repr(e) for e in EVENT_TYPES)})",
                f"event_type: must be one of {', '.join(EVENT_TYPES)}",
            ),
            ("t.price < 0", "price: must be >= 0"),
        ],
        "campaigns": [("t.end_date < t.start_date", "end_date: before start_date")],
    }
    return rules[source.name]


# Staging columns that are not a plain cast of the contract column of the same name.
STAGING_EXPRESSIONS: dict[str, dict[str, str]] = {
    "sessions": {
        # the contract's session_date may carry a time: keep both the moment and the day
        "session_started_at": "t.session_date",
        "session_date": "t.session_date::date",
        # non-purchases have no order value: 0, so that sums need no NULL handling
        "purchase_amount": "coalesce(t.purchase_amount, 0)",
    }
}


def _staging_columns(conn, source: Source) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'staging' and table_name = %s and column_name not like '\\_%%' "
            "order by ordinal_position",
            (source.name,),
        )
        return [row[0] for row in cur.fetchall()]


# ---------------------------------------------------------------------------------------------
# step 1: land


def land_files(conn, data_dir: Path, *, reprocess: bool = False) -> list[FileResult]:
    """Check each contract file whole and land the good ones: rows that the screening pass
    (`screen_rows`) lets through into staging.<source>, the others into raw.<source> as text.

    A file whose exact content was loaded before is skipped unless `reprocess` (after a rule
    change, or to rescue orphans whose parents arrived later): files stay in the landing
    directory, and a daily run then reads only what is new. A file with the same content as
    another of this batch is skipped too. Returns one FileResult per file; raises NoNewFiles
    when every file was skipped. raw and staging hold only this batch: they are emptied
    first.
    """
    ensure_schema(conn)
    files = discover_files(data_dir)
    is_valid = _validity_function(conn)
    loaded = set() if reprocess else _loaded_files(conn)
    with conn.cursor() as cur:
        for source in SOURCES:
            cur.execute(sql.SQL("truncate {}").format(sql.Identifier("raw", source.name)))
            # the last batch's key index (row rules): COPY would maintain it row by row
            cur.execute(
                sql.SQL("drop index if exists {}").format(
                    sql.Identifier("staging", _key_index(source))
                )
            )
            cur.execute(sql.SQL("truncate {}").format(sql.Identifier("staging", source.name)))
            # a first load into core adopts staging's table as core's (merge_into_core), so
            # it is logged from its first row; any other batch's staging is unlogged scratch
            _set_staging_logged(cur, source, logged=_adoptable(cur, source))
        cur.execute("truncate raw.batch_files")
    results: list[FileResult] = []
    seen: dict[tuple[str, str], str] = {}
    staged_sources: set[str] = set()  # sources whose staging table holds rows of this batch
    for source, path in files:
        sha = file_sha256(path)
        result = FileResult(source=source.name, path=str(path), sha256=sha, status="landed")
        results.append(result)
        if (sha, source.name) in loaded:
            result.status, result.message = "skipped", "already loaded (same content)"
            continue
        if (sha, source.name) in seen:
            result.status = "skipped"
            result.message = f"same content as {seen[(sha, source.name)]} in this batch"
            continue
        seen[(sha, source.name)] = path.name
        with conn.cursor() as cur:
            cur.execute("savepoint land_file")
            try:
                header = read_header(path, source)
                _land_file(
                    cur,
                    source,
                    path,
                    header,
                    is_valid,
                    result,
                    first_into_staging=source.name not in staged_sources,
                )
                staged_sources.add(source.name)
                cur.execute(
                    "insert into raw.batch_files (source, file_name, file_sha256, file_path) "
                    "values (%s, %s, %s, %s)",
                    (source.name, path.name, sha, str(path)),
                )
            except FileRejected as rejection:
                cur.execute("rollback to savepoint land_file")
                result.status, result.message = "rejected", str(rejection)
            cur.execute("release savepoint land_file")
    if all(r.status == "skipped" for r in results):
        raise NoNewFiles(f"every file in {data_dir} was loaded before; nothing new to ingest")
    return results


def _land_file(
    cur,
    source: Source,
    path: Path,
    header: list[str],
    is_valid: str,
    result: FileResult,
    *,
    first_into_staging: bool,
) -> None:
    """Land one file: screened in the client, else COPY'd whole into raw. Sets the file's
    `rows_read` (also when a column of the wrong type throughout then rejects it).

    The screening pass (`_screen_file`) sends a row in canonical form that breaks no row rule
    straight to staging, and every other row to raw for the row rules. Anything it cannot
    read as PostgreSQL would (a ragged row, bytes that are not UTF-8, a broken gzip stream)
    makes it step aside: its writes are rolled back and the file is COPY'd into raw whole, as
    before, so that PostgreSQL's COPY decides and words the rejection.
    """
    cur.execute("savepoint screen_file")
    try:
        rows, unparsed = _screen_file(cur, source, path, header, freeze=first_into_staging)
    except Exception as error:  # noqa: BLE001 - any failure: the COPY below is the authority
        cur.execute("rollback to savepoint screen_file")
        cur.execute("release savepoint screen_file")
        log.info("%s: screening stopped (%s); COPY into raw instead", path.name, error)
        first_block = _next_block(cur, source)
        result.rows_read = _copy_file(cur, source, path, header)
        _reject_wrong_type_throughout(cur, source, path, header, first_block, is_valid)
        return
    cur.execute("release savepoint screen_file")
    result.rows_read = rows
    if unparsed:
        # every non-empty value of these columns went to raw with its row: count them there
        _reject_wrong_type_throughout(cur, source, path, unparsed, 0, is_valid)


# Canonical text per kind: a value of this form parses in PostgreSQL to the value that the
# row rules' cast gives, and is >= 0 (so the rules `>= 0` hold). Other forms (signs, spaces,
# exponents, more decimals than the type keeps, other date styles) go to the row rules.
# A day of the year in ISO form that every year has: 29 February goes to the rules too.
_ISO_DAY = (
    r"[1-9][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)"
    r"|(0[13578]|1[02])-31)"
)
CANONICAL_PATTERNS = {
    "integer": r"^[0-9]{1,9}$",  # 9 digits: below 2^31
    "number": r"^[0-9]{1,15}(\.[0-9]{1,15})?$",
    "money": r"^[0-9]{1,12}(\.[0-9]{1,2})?$",  # numeric(14,2), nothing to round
    "date": rf"^{_ISO_DAY}$",
    "timestamp": rf"^{_ISO_DAY}([ T]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{{1,6}})?)?$",
}
# Bytes of CSV that the screening pass parses at a time (pyarrow's block size)
SCREEN_BLOCK_BYTES = 16 << 20


def screen_rows(source: Source, values: dict) -> tuple:
    """Which rows may go straight to staging, and which typed columns had a value that parses.

    `values`: every contract column of `source` as a pyarrow string array of the file's text
    (null where the CSV field is empty and unquoted). A row is good when each value is
    canonical (`CANONICAL_PATTERNS`; text without a space at either end; a contract boolean
    word) or empty where the column may be, and no row rule can be broken; every other row
    goes to the row rules in SQL, which decide and give reasons. So this function may send a
    good row to SQL, never a bad row to staging. Returns (good: boolean array, parsed: the
    typed columns with at least one canonical value).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n_rows = len(values[source.columns[0].name])
    good = pa.array([True] * n_rows, pa.bool_()) if n_rows else pa.array([], pa.bool_())
    parsed = set()
    canonical = {}
    for column in source.columns:
        value = values[column.name]
        ok = _canonical(column, value)
        canonical[column.name] = ok
        if column.kind != "text" and pc.any(ok).as_py():
            parsed.add(column.name)
        if column.nullable:
            ok = pc.or_(ok, pc.is_null(value))
        good = pc.and_(good, ok)
    breaks = _may_break_rule(source, values, canonical)
    if breaks is not None:
        good = pc.and_(good, pc.invert(breaks))
    return good, parsed


def _canonical(column: Column, value):
    """True where the value is non-empty and in canonical form for its kind; never null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.kind == "text":
        edges = pc.or_(pc.starts_with(value, " "), pc.ends_with(value, " "))
        ok = pc.and_(pc.invert(edges), pc.not_equal(value, ""))
    elif column.kind == "boolean":
        words = pa.array(TRUE_WORDS + FALSE_WORDS)
        ok = pc.and_(pc.is_valid(value), pc.is_in(pc.utf8_lower(value), value_set=words))
    else:
        ok = pc.match_substring_regex(value, CANONICAL_PATTERNS[column.kind])
    return pc.fill_null(ok, False)


def _may_break_rule(source: Source, values: dict, canonical: dict):
    """True where a row might break one of `_row_rules(source)` (the `>= 0` rules hold for
    canonical values); None when the source has no other rule."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def truth(name: str, words: tuple[str, ...]):
        return pc.fill_null(pc.is_in(pc.utf8_lower(values[name]), value_set=pa.array(words)), False)

    if source.name == "customers":
        age = pc.if_else(canonical["age"], values["age"], None)
        return pc.fill_null(pc.greater(pc.cast(age, pa.int32()), 120), False)
    if source.name == "sessions":
        amount = values["purchase_amount"]
        positive = pc.fill_null(pc.match_substring_regex(amount, "[1-9]"), False)
        return pc.or_(
            pc.and_(truth("purchase_made", FALSE_WORDS), positive),
            pc.and_(truth("purchase_made", TRUE_WORDS), pc.is_null(amount)),
        )
    if source.name == "events":
        known = pc.is_in(values["event_type"], value_set=pa.array(EVENT_TYPES))
        return pc.invert(pc.fill_null(known, False))
    if source.name == "campaigns":
        # canonical dates (YYYY-MM-DD) compare as text as they do as dates
        return pc.fill_null(pc.less(values["end_date"], values["start_date"]), False)
    return None


def _screen_file(
    cur, source: Source, path: Path, header: list[str], *, freeze: bool
) -> tuple[int, list[str]]:
    """Read the file with pyarrow's CSV reader and COPY its good rows (`screen_rows`) into
    staging, typed by PostgreSQL from their canonical text, and the others into raw with
    their original text. Returns the number of rows and the typed columns of the header in
    which no value parsed (candidates for a wrong-type-throughout rejection).

    Reading and screening run in a thread while the connection COPYs the previous block, so
    that the client's pass and PostgreSQL's overlap on two cores. The rows for raw wait in a
    temporary file (normally empty) and are COPY'd after.

    With `freeze` (staging.<source> holds no row of this batch yet) the rows are written
    frozen and their pages all-visible (COPY FREEZE, which needs the table emptied in the
    same subtransaction): otherwise the row rules' first scan of staging sets every row's
    hint bits and so writes every page again (8.8 GB at 1,000,000 customers), and the
    audit's index-only scans of the key index must visit the heap.
    """
    import tempfile

    staging_columns = _staging_columns(cur.connection, source)
    staging = sql.Identifier("staging", source.name)
    if freeze:
        cur.execute(sql.SQL("truncate {}").format(staging))
    # every row of the file has the same `_file`: stored from the default, not sent per row
    cur.execute(
        sql.SQL("alter table {} alter column _file set default {}").format(
            staging, sql.Literal(path.name)
        )
    )
    parsed: set[str] = set()
    rows = 0
    with tempfile.TemporaryFile() as to_raw:

        def blocks() -> Iterator[bytes]:
            nonlocal rows
            for values in _read_file_values(source, path, header):
                good, block_parsed = screen_rows(source, values)
                parsed.update(block_parsed)
                to_staging, others = _split_block(
                    source, values, good, path.name, rows + 1, staging_columns
                )
                rows += len(good)
                if others:
                    to_raw.write(others)
                if to_staging:
                    yield to_staging

        read_ahead = _ReadAhead(blocks())
        try:
            cur.copy_expert(
                sql.SQL("copy {} ({}, _row_number) from stdin with (format csv{})")
                .format(
                    staging,
                    sql.SQL(", ").join(map(sql.Identifier, staging_columns)),
                    sql.SQL(", freeze" if freeze else ""),
                )
                .as_string(cur),
                read_ahead,
            )
        finally:
            read_ahead.close()
        if to_raw.tell():
            to_raw.seek(0)
            _copy_original_text(cur, source, to_raw)
    unparsed = [c.name for c in source.columns if c.name in header and c.kind != "text"]
    return rows, [name for name in unparsed if name not in parsed]


def _copy_original_text(cur, source: Source, handle) -> None:
    """COPY rows in the CSV of `_split_block` (contract columns, _file, _row_number) into raw."""
    cur.copy_expert(
        sql.SQL("copy {} ({}, _file, _row_number) from stdin with (format csv)")
        .format(
            sql.Identifier("raw", source.name),
            sql.SQL(", ").join(sql.Identifier(c.name) for c in source.columns),
        )
        .as_string(cur),
        handle,
        size=1 << 20,
    )


def _read_file_values(source: Source, path: Path, header: list[str]) -> Iterator[dict]:
    """The file's rows, block by block, as {contract column: pyarrow string array}.

    Read as PostgreSQL's COPY (format csv) reads: quoted fields may hold newlines, an empty
    line is a (ragged) row, an unquoted empty field is null and a quoted one the empty text;
    no other text means null. A column that the header lacks is null throughout.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    known = [name for name in header if name in {c.name for c in source.columns}]
    reader = pacsv.open_csv(
        str(path),  # a path: pyarrow decompresses .gz itself
        read_options=pacsv.ReadOptions(
            skip_rows=1, column_names=header, block_size=SCREEN_BLOCK_BYTES
        ),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
        convert_options=pacsv.ConvertOptions(
            include_columns=known,
            column_types={name: pa.string() for name in known},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    for batch in reader:
        yield {
            c.name: batch.column(c.name)
            if c.name in known
            else pa.nulls(batch.num_rows, pa.string())
            for c in source.columns
        }


def _split_block(
    source: Source, values: dict, good, file_name: str, first_row: int, staging_columns
) -> tuple[bytes, bytes]:
    """CSV for staging (the good rows, in staging's columns, with `_row_number`) and for raw
    (the others, every contract column's original text, with `_file` and `_row_number`)."""
    import pyarrow.compute as pc

    staged = {name: _staging_value(source, name, values) for name in staging_columns}
    return (
        _staging_csv(staged, good, first_row),
        _csv(
            {c.name: values[c.name] for c in source.columns}, pc.invert(good), file_name, first_row
        ),
    )


def _csv(columns: dict, keep, file_name: str, first_row: int) -> bytes:
    """The rows of `columns` where `keep`, with `_file` and `_row_number`, as CSV for COPY:
    text is quoted, so a null (unquoted empty) and an empty text stay apart."""
    import pyarrow as pa

    if not keep.true_count:
        return b""
    return _write_csv(
        {**columns, "_file": pa.array([file_name] * len(keep), pa.string())}, keep, first_row
    )


def _staging_csv(columns: dict, keep, first_row: int) -> bytes:
    """The screened rows of `columns` where `keep`, with `_row_number`, as CSV for COPY into
    staging (whose `_file` comes from the column's default, set for the file).

    Unquoted where no value needs quotes: a screened value is never the empty text (the
    screen sends those rows to raw), so an unquoted empty field can only be a null. Without
    the quotes and `_file`, a block is 26% smaller (events) and 28% (sessions), and land
    took 91-96 s against 103 s at 1,000,000 customers. A block with a comma, quote or line
    break in a value is written quoted."""
    import pyarrow as pa

    if not keep.true_count:
        return b""
    try:
        return _write_csv(columns, keep, first_row, quoting_style="none")
    except pa.ArrowInvalid:  # a value holds a structural character
        return _write_csv(columns, keep, first_row)


def _write_csv(columns: dict, keep, first_row: int, **options) -> bytes:
    """The rows of `columns` where `keep`, numbered from `first_row` in `_row_number`, as
    headerless CSV (pyarrow's writer with `options`)."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    n_rows = len(keep)
    table = pa.table(
        {**columns, "_row_number": pa.array(range(first_row, first_row + n_rows), pa.int64())}
    ).filter(keep)
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, **options))
    return sink.getvalue()


def _staging_value(source: Source, name: str, values: dict):
    """Staging column `name` as canonical text (STAGING_EXPRESSIONS, for text in the file)."""
    import pyarrow.compute as pc

    if source.name == "sessions":
        if name == "session_started_at":
            return values["session_date"]
        if name == "session_date":
            return pc.utf8_slice_codeunits(values["session_date"], 0, 10)
        if name == "purchase_amount":
            return pc.fill_null(values["purchase_amount"], "0")
    return values[name]


class _ReadAhead:
    """A file-like object over an iterator of byte blocks that a thread computes ahead.

    COPY reads it from the calling thread while the next blocks are produced in another
    (pyarrow releases the GIL); an error in the producer surfaces at the next read.
    """

    def __init__(self, blocks: Iterator[bytes], depth: int = 4):
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(blocks,), daemon=True)
        self._thread.start()

    def _produce(self, blocks: Iterator[bytes]) -> None:
        import queue

        try:
            for block in blocks:
                while not self._stop.is_set():
                    try:
                        self._queue.put(block, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            item = None
        except BaseException as error:  # noqa: BLE001 - handed to the reader
            item = error
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def read(self, size: int = -1) -> bytes:
        item = self._queue.get()
        if item is None:
            self._queue.put(None)  # every later read sees the end too
            return b""
        if isinstance(item, BaseException):
            self._stop.set()
            raise item
        return item

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _loaded_files(conn) -> set[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("select file_sha256, source from raw.load_log where status = 'loaded'")
        return set(cur.fetchall())


def _next_block(cur, source: Source) -> int:
    """The number of raw.<source>'s last block: a file COPY'd now lands there or after."""
    cur.execute(
        "select greatest(pg_relation_size(%s::regclass) / current_setting('block_size')::int - 1,"
        " 0)",
        (f"raw.{source.name}",),
    )
    return cur.fetchone()[0]


def _copy_file(cur, source: Source, path: Path, header: list[str]) -> int:
    """COPY one file into raw.<source>; return its number of data rows.

    When every column of the file is in the contract, COPY writes straight into raw, the
    file name and row number coming from column defaults set for this file. A file with
    extra columns goes through a temporary table that drops them.
    """
    import psycopg2

    raw = sql.Identifier("raw", source.name)
    known = {c.name for c in source.columns}
    direct = set(header) <= known
    if direct:
        cur.execute(
            sql.SQL(
                "alter table {raw} alter column _file set default {name}, "
                "alter column _row_number restart with 1"
            ).format(raw=raw, name=sql.Literal(path.name))
        )
        target = raw
    else:
        cur.execute("drop table if exists _landing")
        cur.execute(
            sql.SQL(
                "create temp table _landing (_row_number bigint generated always as identity, {})"
            ).format(
                sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(n)) for n in header)
            )
        )
        target = sql.Identifier("_landing")
    copy = sql.SQL("copy {} ({}) from stdin with (format csv, header true, encoding 'UTF8')")
    try:
        with _open_binary(path) as handle:
            cur.copy_expert(
                copy.format(target, sql.SQL(", ").join(map(sql.Identifier, header))).as_string(cur),
                handle,
                size=1 << 20,
            )
    except (psycopg2.DataError, psycopg2.errors.BadCopyFileFormat) as error:
        raise FileRejected(path, None, f"unreadable CSV: {_copy_error(error)}") from error
    except (OSError, EOFError) as error:
        raise FileRejected(path, None, f"unreadable file ({error})") from error
    rows = cur.rowcount
    if not direct:
        targets = sql.SQL(", ").join(sql.Identifier(n) for n in header if n in known)
        cur.execute(
            sql.SQL(
                "insert into {raw} ({targets}, _file, _row_number) "
                "select {targets}, %s, _row_number from _landing"
            ).format(raw=raw, targets=targets),
            (path.name,),
        )
        cur.execute("drop table _landing")
    return rows


def _copy_error(error) -> str:
    """PostgreSQL's COPY error with the line it names, e.g. 'extra data ... (line 7)'."""
    message = error.pgerror or str(error)
    primary = message.splitlines()[0].replace("ERROR:", "").strip()
    line = re.search(r"COPY [^,]+, line (\d+)", message)
    return f"{primary} (line {line.group(1)})" if line else primary


def _reject_wrong_type_throughout(
    cur, source: Source, path: Path, header: list[str], first_block: int, is_valid: str
) -> None:
    """Reject the file if a typed column has values and none of them parses.

    A file that is fine answers at its first rows: per column, a probe stops at the first
    value that parses, starting at the block where the file's rows begin (a TID range scan).
    Only a column whose probe finds nothing is counted whole, over all of raw's rows of the
    file, so that a row placed in an earlier block cannot escape the count.
    """
    typed = [c for c in source.columns if c.kind != "text" and c.name in header]
    if not typed:
        return
    raw = sql.Identifier("raw", source.name)
    probes = [
        sql.SQL(
            "exists (select from {raw} where ctid >= %(first_tid)s::tid "
            "and _file = %(file)s and {v} is not null and {ok})"
        ).format(raw=raw, v=_value(column.name), ok=_is_valid(column, is_valid))
        for column in typed
    ]
    cur.execute(
        sql.SQL("select {}").format(sql.SQL(", ").join(probes)),
        {"first_tid": f"({first_block},0)", "file": path.name},
    )
    suspects = [column for column, parses in zip(typed, cur.fetchone(), strict=True) if not parses]
    if not suspects:
        return
    counts = []
    for column in suspects:
        counts.append(sql.SQL("count({v})").format(v=_value(column.name)))
        counts.append(
            sql.SQL("count(*) filter (where {v} is not null and {ok})").format(
                v=_value(column.name), ok=_is_valid(column, is_valid)
            )
        )
    cur.execute(
        sql.SQL("select {} from {} where _file = %s").format(sql.SQL(", ").join(counts), raw),
        (path.name,),
    )
    row = cur.fetchone()
    for index, column in enumerate(suspects):
        non_empty, valid = row[2 * index], row[2 * index + 1]
        if non_empty >= WRONG_TYPE_MIN_VALUES and valid == 0:
            raise FileRejected(
                path, column.name, f"wrong type throughout: no value parses as {column.kind}"
            )


# ---------------------------------------------------------------------------------------------
# step 2: row rules


def apply_row_rules(conn, logical_date: datetime) -> dict[str, dict[str, int]]:
    """Split this batch's raw rows into staging (good) and raw.quarantine (bad, with reasons).

    Sources are processed parents first, so that a session is checked against the customers
    of this batch that passed their own rules as well as those already in core. Land sent
    the rows in canonical form that break no rule of their own straight to staging, and the
    others to raw. Per source, set-based passes that read and write each good row once:
    0. rows of staging whose parent is missing go back to raw, with their original text read
       again from their file, so that the rules below quarantine them; a re-run first
       removes from staging the rows that an earlier run inserted from raw;
    1. check every row of raw (types, emptiness, the source's rules, parents) and cast the rows that
       break no rule into staging, in the same pass;
    2. only when staging got fewer rows than raw holds, check again to keep the bad ones, with
       their reasons and original text, in the temporary table `_rejected`;
    3. move later duplicates of a key from staging to `_rejected` (a unique index on the key
       proves that there are none; only when it fails are the keys seen twice ranked);
    4. write `_rejected` to raw.quarantine.
    Returns per source the rows loaded into staging and quarantined.
    """
    is_valid = _validity_function(conn)
    counts = {}
    with conn.cursor() as cur:
        # hashes over millions of rows (parents, duplicate keys): keep them in memory
        cur.execute(sql.SQL("set local work_mem = {}").format(sql.Literal(ROW_RULES_WORK_MEM)))
        for source in SOURCES:
            cur.execute(
                "delete from raw.quarantine q using raw.batch_files f "
                "where q.file_sha256 = f.file_sha256 and q.source = f.source and f.source = %s",
                (source.name,),
            )
            # an earlier run's key index would refuse this run's rows from raw that repeat a key
            cur.execute(
                sql.SQL("drop index if exists {}").format(
                    sql.Identifier("staging", _key_index(source))
                )
            )
            _undo_earlier_row_rules(cur, source)
            _return_orphans_to_raw(cur, source)
            cur.execute(_good_rows_sql(source, is_valid, _staging_columns(conn, source)))
            staged = cur.rowcount
            cur.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier("raw", source.name))
            )
            rejected = cur.fetchone()[0] - staged
            cur.execute("drop table if exists _rejected")
            cur.execute(
                _checked_rows_sql(source, is_valid)
                if rejected
                else "create temp table _rejected "
                "(_file text, _row_number bigint, reasons text[], record jsonb)"
            )
            duplicates = _move_duplicates(cur, source)
            cur.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier("staging", source.name))
            )
            counts[source.name] = {
                "loaded": cur.fetchone()[0],
                "quarantined": _insert_quarantined_rows(cur, source, logical_date)
                if rejected + duplicates
                else 0,
            }
            cur.execute("drop table _rejected")
            cur.execute(sql.SQL("analyze {}").format(sql.Identifier("staging", source.name)))
            cur.execute(
                "update raw.batch_files set rules_applied = true where source = %s",
                (source.name,),
            )
    return counts


def _undo_earlier_row_rules(cur, source: Source) -> None:
    """Remove from staging the rows that an earlier run of the row rules inserted from raw:
    the rules below insert them again (a row is in staging from land, or from raw).

    Only after such a run (raw.batch_files.rules_applied): the search reads all of staging,
    49 s of the 117 s of row rules at 1,000,000 customers when nothing was there to find."""
    raw = sql.Identifier("raw", source.name)
    cur.execute(
        "select exists (select from raw.batch_files where source = %s and rules_applied)",
        (source.name,),
    )
    if cur.fetchone()[0]:
        cur.execute(
            sql.SQL(
                "delete from {staging} s using {raw} r "
                "where s._file = r._file and s._row_number = r._row_number"
            ).format(staging=sql.Identifier("staging", source.name), raw=raw)
        )


def _parent_lookups(
    source: Source, row: str
) -> tuple[list[sql.Composable], list[tuple[sql.Composable, str]]]:
    """For each parent of `source`: left joins of the rows aliased `row` to the parent's rows
    in staging and in core, and the condition that neither holds the row's parent key, with
    its reason. The parent's key is unique in staging (after its own row rules) and in core:
    each left join finds at most one row."""
    joins, missing = [], []
    for index, (column, parent_name) in enumerate(source.parents):
        parent = SOURCES_BY_NAME[parent_name]
        in_staging, in_core = sql.Identifier(f"staging_{index}"), sql.Identifier(f"core_{index}")
        for alias, schema in ((in_staging, "staging"), (in_core, "core")):
            joins.append(
                sql.SQL("left join {table} {alias} on {alias}.{pk} = {row}.{column}").format(
                    table=sql.Identifier(schema, parent.name),
                    alias=alias,
                    pk=sql.Identifier(parent.key),
                    row=sql.Identifier(row),
                    column=sql.Identifier(column),
                )
            )
        missing.append(
            (
                sql.SQL(
                    "{row}.{column} is not null and {staged}.{pk} is null and {core}.{pk} is null"
                ).format(
                    row=sql.Identifier(row),
                    column=sql.Identifier(column),
                    staged=in_staging,
                    core=in_core,
                    pk=sql.Identifier(parent.key),
                ),
                f"{column}: no {parent.name} row has this {parent.key}",
            )
        )
    return joins, missing


def _return_orphans_to_raw(cur, source: Source) -> None:
    """Move the rows of staging whose parent is in neither this batch's staging nor core back
    to raw, with their original text, for the rules to quarantine with every reason."""
    if not source.parents:
        return
    joins, missing = _parent_lookups(source, "s")
    cur.execute("drop table if exists _to_raw")
    cur.execute(
        sql.SQL(
            "create temp table _to_raw as select s._file, s._row_number from {staging} s {joins} "
            "where {missing}"
        ).format(
            staging=sql.Identifier("staging", source.name),
            joins=sql.SQL(" ").join(joins),
            missing=sql.SQL(" or ").join(sql.SQL("({})").format(c) for c, _ in missing),
        )
    )
    if cur.rowcount:
        _copy_rows_back_to_raw(cur, source)
        cur.execute(
            sql.SQL(
                "delete from {staging} s using _to_raw t "
                "where s._file = t._file and s._row_number = t._row_number"
            ).format(staging=sql.Identifier("staging", source.name))
        )
    cur.execute("drop table _to_raw")


def _return_later_duplicates_to_raw(cur, source: Source) -> None:
    """Copy to raw the original text of the later rows of each key in `_duplicated` that came
    straight from land, so that `_mark_duplicates_sql` quarantines them with it."""
    cur.execute("drop table if exists _to_raw")
    cur.execute(
        sql.SQL(
            """
            create temp table _to_raw as
            select ranked._file, ranked._row_number
            from (
                select s._file, s._row_number,
                       row_number() over (
                           partition by s.{key} order by s._file collate "C", s._row_number
                       ) as key_rank
                from {staging} s
                join _duplicated d on d.{key} = s.{key}
            ) ranked
            where ranked.key_rank > 1
              and not exists (
                  select from {raw} r
                  where r._file = ranked._file and r._row_number = ranked._row_number
              )
            """
        ).format(
            key=sql.Identifier(source.key),
            staging=sql.Identifier("staging", source.name),
            raw=sql.Identifier("raw", source.name),
        )
    )
    if cur.rowcount:
        _copy_rows_back_to_raw(cur, source)
    cur.execute("drop table _to_raw")


def _copy_rows_back_to_raw(cur, source: Source) -> None:
    """COPY into raw the original text of the rows listed in `_to_raw` (_file, _row_number),
    read again from their files (which must still hold the content that was landed)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cur.execute(
        "select f.file_name, f.file_path, f.file_sha256, array_agg(t._row_number) "
        "from _to_raw t join raw.batch_files f on f.file_name = t._file and f.source = %s "
        "group by 1, 2, 3",
        (source.name,),
    )
    for file_name, file_path, sha, row_numbers in cur.fetchall():
        path = Path(file_path)
        if not path.is_file() or file_sha256(path) != sha:
            raise RuntimeError(
                f"{file_path} changed or went away since it was landed: run the ingestion again"
            )
        wanted = pa.array(row_numbers, pa.int64())
        chunks, first_row = [], 1
        for values in _read_file_values(source, path, read_header(path, source)):
            n_rows = len(values[source.columns[0].name])
            numbers = pa.array(range(first_row, first_row + n_rows), pa.int64())
            keep = pc.is_in(numbers, value_set=wanted)
            chunks.append(
                _csv({c.name: values[c.name] for c in source.columns}, keep, file_name, first_row)
            )
            first_row += n_rows
        _copy_original_text(cur, source, io.BytesIO(b"".join(chunks)))


def _rule_columns(source: Source) -> set[str]:
    """The columns whose typed value a row rule reads (`t.<column>` in its condition)."""
    names = {c.name for c in source.columns}
    return {
        name
        for condition, _ in _row_rules(source)
        for name in re.findall(r"\bt\.(\w+)", condition)
        if name in names
    }


def _checked_rows(
    source: Source, is_valid: str, *, for_staging: bool
) -> tuple[sql.Composed, list[tuple[sql.Composable, sql.Composable]]]:
    """The batch's raw rows with every rule checked: a `from` clause whose rows `t` hold
    `_file`, `_row_number`, `<column>__empty`, `<column>__bad` (the text of a value that
    does not parse) and the typed values, joined to the parents; and the (condition, reason)
    pairs of the rules. `for_staging`: every column typed, as staging takes them; otherwise
    only those that rules read, and each column's original text as `<column>__raw`.

    Nested subqueries (`offset 0` keeps PostgreSQL from flattening them) evaluate each step
    once per value: `v` trims, `p` tests whether each value parses, `t` casts.
    """
    typed_columns = {c.name for c in source.columns} if for_staging else _rule_columns(source)
    trimmed, flags, parsed, reasons = [], [], [], []
    for column in source.columns:
        name = column.name
        raw_text = sql.Identifier(f"{name}__raw")
        trimmed.append(
            sql.SQL("{v} as {n}").format(v=_value(name, alias="r"), n=sql.Identifier(name))
            if for_staging
            else sql.SQL("{v} as {n}, r.{n} as {raw}").format(
                v=_value(name, alias="r"), n=sql.Identifier(name), raw=raw_text
            )
        )
        value = sql.SQL("p.{}").format(sql.Identifier(name))
        parsed.append(
            sql.SQL("{v} is null as {e}").format(v=value, e=sql.Identifier(f"{name}__empty"))
        )
        if not for_staging:
            parsed.append(sql.SQL("p.{}").format(raw_text))
        if column.kind == "text":
            parsed.append(sql.SQL("{v} as {n}").format(v=value, n=sql.Identifier(name)))
        else:
            ok = sql.Identifier(f"{name}__ok")
            flags.append(
                sql.SQL("{check} as {ok}").format(
                    check=_is_valid(column, is_valid, "v", trimmed=True), ok=ok
                )
            )
            if name in typed_columns:
                parsed.append(
                    sql.SQL("case when p.{ok} then {cast} end as {n}").format(
                        ok=ok, cast=_typed(column, name, "p", trimmed=True), n=sql.Identifier(name)
                    )
                )
            parsed.append(
                sql.SQL(
                    "case when {v} is not null and not p.{ok} then left({v}, 40) end as {b}"
                ).format(v=value, ok=ok, b=sql.Identifier(f"{name}__bad"))
            )
        if not column.nullable:
            reasons.append(
                (
                    sql.SQL("t.{}").format(sql.Identifier(f"{name}__empty")),
                    sql.Literal(f"{name}: is empty"),
                )
            )
        if column.kind != "text":
            bad = sql.SQL("t.{}").format(sql.Identifier(f"{name}__bad"))
            reasons.append(
                (
                    sql.SQL("{} is not null").format(bad),
                    sql.SQL("{} || {} || {}").format(
                        sql.Literal(f"{name}: not a valid {column.kind}: '"), bad, sql.Literal("'")
                    ),
                )
            )
    for condition, reason in _row_rules(source):
        reasons.append((sql.SQL(condition), sql.Literal(reason)))
    parent_joins, missing = _parent_lookups(source, "t")
    reasons += [(condition, sql.Literal(reason)) for condition, reason in missing]
    rows = sql.SQL(
        """
        from (
            select p._file, p._row_number, {parsed}
            from (
                select v.*, {flags}
                from (select r._file, r._row_number, {trimmed} from {raw} r offset 0) v
                offset 0
            ) p
            offset 0
        ) t
        {parent_joins}
        """
    ).format(
        parsed=sql.SQL(", ").join(parsed),
        flags=sql.SQL(", ").join(flags) if flags else sql.SQL("true as _no_typed_column"),
        trimmed=sql.SQL(", ").join(trimmed),
        raw=sql.Identifier("raw", source.name),
        parent_joins=sql.SQL(" ").join(parent_joins),
    )
    return rows, reasons


def _any_broken(reasons: list[tuple[sql.Composable, sql.Composable]]) -> sql.Composed:
    """True when a row breaks a rule; NULL (not broken) when no condition holds but some
    could not be decided, as for an empty value in a rule's comparison."""
    return sql.SQL(" or ").join(sql.SQL("({})").format(condition) for condition, _ in reasons)


def _good_rows_sql(source: Source, is_valid: str, staging_columns: list[str]) -> sql.Composed:
    """Insert into staging.<source> the batch's rows that break no rule, typed: they are
    checked and cast in one pass, so that a good row is read and written once."""
    rows, reasons = _checked_rows(source, is_valid, for_staging=True)
    expressions = STAGING_EXPRESSIONS.get(source.name, {})
    return sql.SQL(
        "insert into {staging} ({columns}, _file, _row_number) "
        "select {select_list}, t._file, t._row_number {rows} where ({broken}) is not true"
    ).format(
        staging=sql.Identifier("staging", source.name),
        columns=sql.SQL(", ").join(map(sql.Identifier, staging_columns)),
        select_list=sql.SQL(", ").join(
            sql.SQL(expressions.get(name, f"t.{name}")) for name in staging_columns
        ),
        rows=rows,
        broken=_any_broken(reasons),
    )


def _checked_rows_sql(source: Source, is_valid: str) -> sql.Composed:
    """`_rejected`: the batch's rows that break a rule, with `reasons` (every rule broken) and
    `record` (the contract columns' original text): the complement of `_good_rows_sql`."""
    rows, reasons = _checked_rows(source, is_valid, for_staging=False)
    return sql.SQL(
        """
        create temp table _rejected as
        select t._file, t._row_number, array_remove(array[{reasons}]::text[], null) as reasons,
               jsonb_strip_nulls(jsonb_build_object({record})) as record
        {rows}
        where {broken}
        """
    ).format(
        reasons=sql.SQL(", ").join(
            sql.SQL("case when {} then {} end").format(condition, text)
            for condition, text in reasons
        ),
        record=_record(source, "t"),
        rows=rows,
        # the reasons' array is built only for the rows that break a rule: building and
        # filtering a 20-element array for every good row cost more than the conditions
        broken=_any_broken(reasons),
    )


def _record(source: Source, alias: str, suffix: str = "__raw") -> sql.Composed:
    """`jsonb_build_object`'s arguments: each contract column's name and original text."""
    return sql.SQL(", ").join(
        sql.SQL("{}, {}.{}").format(
            sql.Literal(c.name), sql.Identifier(alias), sql.Identifier(f"{c.name}{suffix}")
        )
        for c in source.columns
    )


def _move_duplicates(cur, source: Source) -> int:
    """Move later duplicates of a key from staging to `_rejected`; return how many.

    A unique index on staging's key proves in one sorted build that no key repeats (its
    collation "C" compares bytes): 1.7 s for the 5.4 million event keys at 100,000
    customers, against 9.3 s to group their 64-bit hashes. The index stays until the end of
    the batch: the children's lookups of their parents in this batch probe it for the few
    rows of raw instead of hashing all of staging (9 s for the events at 1,000,000
    customers), and the audit's uniqueness expectations read it in key order instead of
    sorting (83 s became 64 s at 1,000,000 customers); the next land drops it. Only when it
    fails are the keys searched: grouped by hash first (a hash table of integers fits in
    memory where one of the text keys spilled to disk), and only the keys of a hash seen
    more than once, exactly.
    """
    import psycopg2.errors

    key = sql.Identifier(source.key)
    staging = sql.Identifier("staging", source.name)
    index = _key_index(source)
    cur.execute("savepoint unique_keys")
    try:
        cur.execute(
            sql.SQL("create unique index {} on {} ({})").format(sql.Identifier(index), staging, key)
        )
    except psycopg2.errors.UniqueViolation:
        cur.execute("rollback to savepoint unique_keys")
    else:
        cur.execute("release savepoint unique_keys")
        return 0
    cur.execute("release savepoint unique_keys")
    cur.execute("drop table if exists _duplicated_hashes; drop table if exists _duplicated")
    cur.execute(
        sql.SQL(
            "create temp table _duplicated_hashes as "
            "select hashtextextended({key}, 0) as key_hash from {staging} "
            "group by 1 having count(*) > 1"
        ).format(key=key, staging=staging)
    )
    moved = 0
    if cur.rowcount:
        cur.execute(
            sql.SQL(
                "create temp table _duplicated as "
                "select s.{key} from {staging} s "
                "join _duplicated_hashes h on h.key_hash = hashtextextended(s.{key}, 0) "
                "group by s.{key} having count(*) > 1"
            ).format(key=key, staging=staging)
        )
        if cur.rowcount:
            _return_later_duplicates_to_raw(cur, source)
            cur.execute(_mark_duplicates_sql(source))
            moved = cur.rowcount
        cur.execute("drop table _duplicated")
    cur.execute("drop table _duplicated_hashes")
    return moved


def _key_index(source: Source) -> str:
    """The name of the unique index on staging.<source>'s key that the row rules build; the
    next land, or run of the rules, drops it."""
    return f"_{source.name}_rules_key"


def _mark_duplicates_sql(source: Source) -> sql.Composed:
    """Among the good rows (in staging), the first occurrence of a key wins (by file name,
    then row); the later ones move to `_rejected` with the single reason `<key>: duplicate
    of <file> row <n>` and their original text from raw."""
    return sql.SQL(
        """
        with ranked as (
            select s.ctid as row_id,
                   row_number() over keys as key_rank,
                   first_value(s._file || ' row ' || s._row_number) over keys as first_seen
            from {staging} s
            join _duplicated d on d.{key} = s.{key}
            -- "C": file names sort byte by byte whatever the database's collation
            window keys as (partition by s.{key} order by s._file collate "C", s._row_number)
        ),
        moved as (
            delete from {staging} s
            using ranked d
            where s.ctid = d.row_id and d.key_rank > 1
            returning s._file, s._row_number, d.first_seen
        )
        insert into _rejected (_file, _row_number, reasons, record)
        select m._file, m._row_number, array[{prefix} || m.first_seen],
               jsonb_strip_nulls(jsonb_build_object({record}))
        from moved m
        join {raw} r on r._file = m._file and r._row_number = m._row_number
        """
    ).format(
        key=sql.Identifier(source.key),
        staging=sql.Identifier("staging", source.name),
        raw=sql.Identifier("raw", source.name),
        prefix=sql.Literal(f"{source.key}: duplicate of "),
        record=_record(source, "r", suffix=""),
    )


def _insert_quarantined_rows(cur, source: Source, logical_date: datetime) -> int:
    """Bad rows with their reasons and original text, dated by the run that first loaded
    their file, so that a re-run leaves them as they were."""
    cur.execute(
        "insert into raw.quarantine "
        "(source, file_name, file_sha256, row_number, reasons, record, logical_date) "
        "select f.source, b._file, f.file_sha256, b._row_number, b.reasons, b.record, "
        "coalesce(l.logical_date, %(logical_date)s) "
        "from _rejected b "
        "join raw.batch_files f on f.source = %(source)s and f.file_name = b._file "
        "left join raw.load_log l on l.file_sha256 = f.file_sha256 and l.source = f.source",
        {"source": source.name, "logical_date": logical_date},
    )
    return cur.rowcount


# ---------------------------------------------------------------------------------------------
# step 4: merge, and the audit log


def merge_into_core(conn) -> dict[str, dict[str, int]]:
    """Upsert staging into core by business key; rows whose values did not change are left
    untouched, so that a re-run rewrites nothing. A first load adopts staging's table as
    core's (`_prepare_merge`, `_adopt_staging`). All in `conn`'s transaction."""
    counts, adoptions = _prepare_merge(conn)
    _adopt_staging(conn, adoptions)
    return counts


@dataclass
class _Adoption:
    """A staging table made ready to become core's: core's indexes built on it under
    temporary names (temporary name, core's name), and core's primary key's name."""

    source: Source
    primary_key: str
    indexes: list[tuple[str, str]]


def _prepare_merge(conn) -> tuple[dict[str, dict[str, int]], list[_Adoption]]:
    """Every part of the merge that only reads staging, and so can run beside the audit:
    upserts into core, and for a first load core's indexes built on staging's table, which
    `_adopt_staging` then makes core's. Returns the merge counts and the adoptions."""
    counts, adoptions = {}, []
    with conn.cursor() as cur:
        cur.execute("set local work_mem = '256MB'")
        for source in SOURCES:
            core = sql.Identifier("core", source.name)
            staging = sql.Identifier("staging", source.name)
            if _adoptable(cur, source, at_merge=True):
                adoptions.append(_build_core_indexes_on_staging(cur, source))
                cur.execute(sql.SQL("select count(*) from {}").format(staging))
                counts[source.name] = {"inserted": cur.fetchone()[0], "updated": 0}
                continue
            columns = _staging_columns(conn, source)
            identifiers = sql.SQL(", ").join(map(sql.Identifier, columns))
            cur.execute(sql.SQL("select not exists (select 1 from {})").format(core))
            if cur.fetchone()[0]:
                with _indexes_rebuilt_after(cur, source.name):
                    cur.execute(
                        sql.SQL("insert into {} ({}) select {} from {}").format(
                            core, identifiers, identifiers, staging
                        )
                    )
                    counts[source.name] = {"inserted": cur.rowcount, "updated": 0}
            else:
                counts[source.name] = _upsert(cur, source, core, staging, columns)
            cur.execute(sql.SQL("analyze {}").format(core))
    return counts, adoptions


# Catalogue test: core.<source> (%(core)s) is empty, nothing but its own indexes, primary key
# and row type refers to it (no view, foreign key, trigger, policy, publication, default,
# statistics object), it has no grant, comment, option, parent or child, and its columns are
# staging.<source>'s (%(staging)s) but for staging's provenance columns (named with a leading
# "_"), in the same order, of the same type, collation and nullability.
_ADOPTABLE_SQL = """
with columns as (
    select a.attrelid,
           array_agg(
               row(a.attname, a.atttypid, a.atttypmod, a.attcollation, a.attnotnull,
                   a.atthasdef, a.attidentity, a.attgenerated, a.attacl is null)::text
               order by a.attnum
           ) as signature
    from pg_attribute a
    where a.attrelid in (%(core)s::regclass, %(staging)s::regclass)
      and a.attnum > 0 and not a.attisdropped and a.attname not like '\\_%%'
    group by a.attrelid
)
select not exists (select from {core_table})
   and c.relkind = 'r' and c.relpersistence = 'p' and c.relacl is null and c.reloptions is null
   and not exists (
       select from pg_depend d
       where d.refclassid = 'pg_class'::regclass and d.refobjid = c.oid
         and not (d.deptype in ('a', 'i')
                  and d.classid in ('pg_class'::regclass, 'pg_constraint'::regclass,
                                    'pg_type'::regclass))
   )
   and not exists (select from pg_constraint k where k.conrelid = c.oid and k.contype <> 'p')
   and not exists (
       select from pg_description x
       where x.classoid = 'pg_class'::regclass and x.objoid = c.oid
   )
   and not exists (select from pg_inherits i where c.oid in (i.inhrelid, i.inhparent))
   and (select signature from columns where attrelid = c.oid)
       = (select signature from columns where attrelid = %(staging)s::regclass)
from pg_class c
where c.oid = %(core)s::regclass
"""


def _adoptable(cur, source: Source, *, at_merge: bool = False) -> bool:
    """Whether this batch's staging.<source> can become core.<source> as it is: a first load
    (core empty) into a core table that nothing else refers to (`_ADOPTABLE_SQL`).

    Adopting the table saves writing every row a second time, staging then core: the inserts
    took 71 of the 165 s of a first load's merge at 1,000,000 customers, and the rules' unique
    index on staging's key becomes core's primary key. Land then writes staging logged, as
    core must be. At the merge (`at_merge`) staging must also be logged (landed so), hold
    rows, and have the rules' unique key index; otherwise the rows are inserted."""
    core, staging = f"core.{source.name}", f"staging.{source.name}"
    cur.execute(
        sql.SQL(_ADOPTABLE_SQL).format(core_table=sql.Identifier("core", source.name)),
        {"core": core, "staging": staging},
    )
    if not cur.fetchone()[0]:
        return False
    if not at_merge:
        return True
    cur.execute(
        sql.SQL(
            "select c.relpersistence = 'p' and exists (select from {staging}) and exists ("
            "  select from pg_index x join pg_class i on i.oid = x.indexrelid"
            "  where x.indrelid = c.oid and i.relname = %s and x.indisunique and x.indisvalid"
            "    and x.indnatts = 1 and x.indpred is null and x.indexprs is null"
            "    and x.indkey[0] = ("
            "      select attnum from pg_attribute where attrelid = c.oid and attname = %s))"
            "from pg_class c where c.oid = %s::regclass"
        ).format(staging=sql.Identifier("staging", source.name)),
        (_key_index(source), source.key, staging),
    )
    return cur.fetchone()[0]


def _set_staging_logged(cur, source: Source, *, logged: bool) -> None:
    """Make the (empty) staging.<source> logged or unlogged, if it is not already."""
    cur.execute(
        "select relpersistence = 'p' from pg_class where oid = %s::regclass",
        (f"staging.{source.name}",),
    )
    if cur.fetchone()[0] != logged:
        cur.execute(
            sql.SQL("alter table {} set {}").format(
                sql.Identifier("staging", source.name),
                sql.SQL("logged" if logged else "unlogged"),
            )
        )


def _build_core_indexes_on_staging(cur, source: Source) -> _Adoption:
    """Build core.<source>'s secondary indexes on staging.<source> under temporary names.
    An index build takes a lock that lets the audit go on reading the table."""
    primary_key, indexes = None, []
    for name, definition, constraint, _ in _core_indexes(cur, source.name):
        if constraint:
            primary_key = constraint
            continue
        # pg_get_indexdef: "CREATE [UNIQUE ]INDEX <name> ON [ONLY ]<table> USING <rest>"
        head, _, rest = definition.partition(" USING ")
        temporary = f"_{source.name}_core_{len(indexes)}"
        cur.execute(
            sql.SQL("create {unique}index {index} on {table} using {rest}").format(
                unique=sql.SQL("unique " if head.startswith("CREATE UNIQUE") else ""),
                index=sql.Identifier(temporary),
                table=sql.Identifier("staging", source.name),
                rest=sql.SQL(rest),
            )
        )
        indexes.append((temporary, name))
    if primary_key is None:
        raise ValueError(f"core.{source.name} has no primary key to adopt staging's key as")
    return _Adoption(source, primary_key, indexes)


def _adopt_staging(conn, adoptions: list[_Adoption]) -> None:
    """Make each prepared staging table core's, in `conn`'s transaction: core's empty table is
    dropped, staging's provenance columns too (a catalogue change: their bytes stay in the
    rows, after every column that a query reads), its unique key index becomes the primary
    key and its indexes take core's names; a new, empty staging table takes its place.

    These take an exclusive lock on staging, so they run once the audit has ended."""
    if not adoptions:
        return
    with conn.cursor() as cur:
        # the audit's connections are closed by now: a lock held still is an error, not a wait
        cur.execute("set local lock_timeout = '60s'")
        for adoption in adoptions:
            name = adoption.source.name
            staging = sql.Identifier("staging", name)
            cur.execute(sql.SQL("drop table {}").format(sql.Identifier("core", name)))
            cur.execute(
                "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
                "and not attisdropped and attname like '\\_%%' order by attnum",
                (f"staging.{name}",),
            )
            provenance = [row[0] for row in cur.fetchall()]
            cur.execute(
                sql.SQL("alter table {} {}").format(
                    staging,
                    sql.SQL(", ").join(
                        sql.SQL("drop column {}").format(sql.Identifier(c)) for c in provenance
                    ),
                )
            )
            cur.execute(
                sql.SQL("alter table {} add constraint {} primary key using index {}").format(
                    staging,
                    sql.Identifier(adoption.primary_key),
                    sql.Identifier(_key_index(adoption.source)),
                )
            )
            for temporary, core_name in adoption.indexes:
                cur.execute(
                    sql.SQL("alter index {} rename to {}").format(
                        sql.Identifier("staging", temporary), sql.Identifier(core_name)
                    )
                )
            cur.execute(sql.SQL("alter table {} set schema core").format(staging))
        # staging's tables anew (unlogged, empty), as the next batch expects them
        cur.execute(DDL_PATH.read_text())


class AuditFailed(Exception):
    """The audit of staging failed, so the merge into core was rolled back."""

    def __init__(self, summary):
        self.summary = summary
        super().__init__(summary.describe())


def merge_into_core_once_audited(conn, audit: Callable[[], Any]) -> tuple[Any, dict]:
    """Merge staging into core in `conn`'s transaction while `audit` runs in a thread; the
    merge stands only if the audit passed.

    Both only read staging, and the audit (Great Expectations) has its own connection, so
    they can run side by side: the step takes about the longer of the two instead of their
    sum. `audit` returns a summary with a `success` flag (validation.ValidationSummary).
    Returns (summary, merge counts) with the merge still uncommitted, for the caller to
    commit. When the audit fails, or either raises, a merge still running is cancelled, the
    merge is rolled back and AuditFailed, or the error, raised: core is left untouched.
    A first load's staging tables become core's (`_adopt_staging`) only once the audit has
    passed: that takes a lock on staging which the audit's reads would wait for.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="audit_and_merge") as pool:
        audited, merged = pool.submit(audit), pool.submit(_prepare_merge, conn)
        pending, failed = {audited, merged}, None
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    if failed is None and (
                        future.exception() is not None
                        or (future is audited and not future.result().success)
                    ):
                        failed = future
                        conn.cancel()  # a request that reaches an idle server process is ignored
        except BaseException:  # the task is being stopped: leaving the pool waits for the merge
            conn.cancel()
            raise
    if failed is not None:
        conn.rollback()
        if failed.exception() is not None:
            raise failed.exception()
        raise AuditFailed(failed.result())
    counts, adoptions = merged.result()
    try:
        _adopt_staging(conn, adoptions)
    except BaseException:
        conn.rollback()
        raise
    return audited.result(), counts


@contextmanager
def _indexes_rebuilt_after(cur, table: str) -> Iterator[None]:
    """Drop core.<table>'s indexes (its primary key included) for a bulk insert into the
    empty table and build them again after it: one sorted build per index is several times
    faster than maintaining each index row by row. All in the caller's transaction."""
    indexes = _core_indexes(cur, table)
    for index, _, constraint, _ in indexes:
        if constraint:
            cur.execute(
                sql.SQL("alter table {} drop constraint {}").format(
                    sql.Identifier("core", table), sql.Identifier(constraint)
                )
            )
        else:
            cur.execute(sql.SQL("drop index {}").format(sql.Identifier("core", index)))
    yield
    for _, definition, constraint, constraint_definition in indexes:
        if constraint:
            cur.execute(
                sql.SQL("alter table {} add constraint {} {}").format(
                    sql.Identifier("core", table),
                    sql.Identifier(constraint),
                    sql.SQL(constraint_definition),
                )
            )
        else:
            cur.execute(definition)


def _core_indexes(cur, table: str) -> list[tuple[str, str, str | None, str | None]]:
    """core.<table>'s indexes, by name: (name, definition, and for the primary key's index
    the constraint's name and definition, else None and None)."""
    cur.execute(
        """
        select i.relname, pg_get_indexdef(i.oid), c.conname, pg_get_constraintdef(c.oid)
        from pg_index x
        join pg_class i on i.oid = x.indexrelid
        left join pg_constraint c on c.conindid = x.indexrelid and c.contype = 'p'
        where x.indrelid = %s::regclass
        order by i.relname
        """,
        (f"core.{table}",),
    )
    return cur.fetchall()


def _upsert(cur, source: Source, core, staging, columns: list[str]) -> dict[str, int]:
    updatable = [c for c in columns if c != source.key]
    cur.execute(
        sql.SQL(
            "with merged as ("
            "insert into {core} as c ({columns}) select {columns} from {staging} "
            "on conflict ({key}) do update set ({updatable}) = ({excluded}) "
            "where ({current}) is distinct from ({excluded}) "
            "returning (xmax = 0) as inserted) "
            "select count(*) filter (where inserted), count(*) filter (where not inserted) "
            "from merged"
        ).format(
            core=core,
            staging=staging,
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            key=sql.Identifier(source.key),
            updatable=sql.SQL(", ").join(map(sql.Identifier, updatable)),
            excluded=sql.SQL(", ").join(
                sql.SQL("excluded.{}").format(sql.Identifier(c)) for c in updatable
            ),
            current=sql.SQL(", ").join(
                sql.SQL("c.{}").format(sql.Identifier(c)) for c in updatable
            ),
        )
    )
    inserted, updated = cur.fetchone()
    return {"inserted": inserted, "updated": updated}


def batch_activity_range(conn) -> tuple[date | None, date | None]:
    """The first and last day of activity in this batch's staging rows (sessions, events,
    signups): downstream refreshes use it to tell new days from late-arriving data."""
    with conn.cursor() as cur:
        cur.execute(
            """
            select min(day), max(day) from (
                select session_date as day from staging.sessions
                union all
                select event_time::date from staging.events
                union all
                select signup_date from staging.customers
            ) as activity
            """
        )
        return cur.fetchone()


def catalogue_changed(merge_counts: dict[str, dict[str, int]]) -> bool:
    """Whether a merge inserted or changed products: every customer's category features may
    then move, so downstream refreshes must not carry old values forward."""
    products = merge_counts.get("products", {})
    return bool(products.get("inserted") or products.get("updated"))


def record_load_log(
    conn,
    files: Iterable[FileResult],
    *,
    run_id: str,
    logical_date: datetime,
) -> None:
    """Write one raw.load_log row per file, with the rows it loaded and quarantined.

    The run that first saw a file stays recorded: re-running the same file updates only
    its counts and status, which come out the same. Call it after the row rules and before
    the merge: it counts each file's rows in staging, which a first load's merge adopts.
    """
    with conn.cursor() as cur:
        for result in files:
            if result.status == "skipped":
                continue
            loaded = quarantined = 0
            if result.status == "landed":
                cur.execute(
                    sql.SQL("select count(*) from {} where _file = %s").format(
                        sql.Identifier("staging", result.source)
                    ),
                    (Path(result.path).name,),
                )
                loaded = cur.fetchone()[0]
                cur.execute(
                    "select count(*) from raw.quarantine where file_sha256 = %s and source = %s",
                    (result.sha256, result.source),
                )
                quarantined = cur.fetchone()[0]
            cur.execute(
                """
                insert into raw.load_log (file_sha256, source, file_path, run_id, logical_date,
                    status, rows_read, rows_loaded, rows_quarantined, message)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                on conflict (file_sha256, source) do update set
                    status = excluded.status,
                    rows_read = excluded.rows_read,
                    rows_loaded = excluded.rows_loaded,
                    rows_quarantined = excluded.rows_quarantined,
                    message = excluded.message
                """,
                (
                    result.sha256,
                    result.source,
                    result.path,
                    run_id,
                    logical_date,
                    "loaded" if result.status == "landed" else result.status,
                    result.rows_read,
                    loaded,
                    quarantined,
                    result.message,
                ),
            )


def rejection_report(files: Iterable[dict], empty_sources: Iterable[str] = ()) -> str | None:
    """A message naming every rejected file and why, and every required source that core
    still lacks; None when there is nothing to report."""
    rejected = [f for f in files if f["status"] == "rejected"]
    empty = list(empty_sources)
    lines = []
    if rejected:
        lines.append(f"{len(rejected)} file(s) rejected, nothing of them loaded:")
        lines += [f"- {f['message']} ({f['path']})" for f in rejected]
    if empty:
        lines.append("core has no rows for a source the pipeline needs:")
        lines += [f"- {name}: provide {name}.csv (see docs/data-contract.md)" for name in empty]
    return "\n".join(lines) or None


def empty_required_sources(conn) -> list[str]:
    """Sources whose file is not optional (customers, sessions) and that core has no row of."""
    empty = []
    with conn.cursor() as cur:
        for source in SOURCES:
            if source.optional_file:
                continue
            cur.execute(
                sql.SQL("select not exists (select 1 from {})").format(
                    sql.Identifier("core", source.name)
                )
            )
            if cur.fetchone()[0]:
                empty.append(source.name)
    return empty


def latest_session_date(data_dir: Path):
    """The last day with a session in the directory's session files (the default as-of)."""
    import pandas as pd
    import pyarrow.csv as pacsv

    latest = None
    for source, path in discover_files(data_dir):
        if source.name != "sessions":
            continue
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                include_columns=["session_date"], column_types={"session_date": "string"}
            ),
        )
        text = table.column("session_date").to_pandas()
        dates = pd.to_datetime(text, format="ISO8601", errors="coerce")
        other = dates.isna() & text.notna()
        if other.any():  # formats other than ISO 8601, read month first as PostgreSQL does
            dates[other] = pd.to_datetime(text[other], format="mixed", errors="coerce")
        if dates.notna().any():
            file_latest = dates.max().date()
            latest = file_latest if latest is None else max(latest, file_latest)
    if latest is None:
        raise NoInputFiles(f"no sessions file with a readable session_date in {data_dir}")
    return latest
