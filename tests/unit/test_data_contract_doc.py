"""docs/data-contract.md stays in step with the code that it documents.

A data engineer reads the document before handing us files, so a column, table, reason or
audit rule that the code has and the document lacks is a broken promise. The code is the
source of truth: the contract's columns (contract.py), the tables (warehouse.sql), the reasons
that ingestion writes into raw.quarantine and the file-level rejections (ingest.py), the
data-health mart and the Great Expectations suites. No database is needed.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from psycopg2 import sql

from ecom_insights import contract, ingest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "data-contract.md"
DDL = ROOT / "include" / "sql" / "ddl" / "warehouse.sql"
DATA_HEALTH_SQL = ROOT / "include" / "sql" / "marts" / "data_health.sql"
INGEST_PY = ROOT / "include" / "ecom_insights" / "ingest.py"
SUITES_DIR = ROOT / "great_expectations" / "expectations"

# The columns that ensure_schema adds to every raw.<source> table after the contract's.
RAW_BOOKKEEPING_COLUMNS = ("_file", "_row_number")
# Words after a column's type in a DDL column definition.
DDL_CONSTRAINT_WORDS = {
    "not",
    "null",
    "primary",
    "default",
    "references",
    "unique",
    "check",
    "generated",
    "constraint",
    "collate",
}
DDL_TABLE_CONSTRAINTS = ("primary key", "unique", "constraint", "foreign key", "check")


# ---------------------------------------------------------------------------------------------
# reading the document


def _heading_text(line: str) -> str:
    return line.lstrip("#").strip().replace("`", "")


def doc_sections(text: str) -> dict[str, str]:
    """Heading text (backticks removed) -> the text up to the next heading of any level."""
    sections: dict[str, str] = {}
    current: str | None = None
    in_code_block = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code_block = not in_code_block
        if not in_code_block and re.match(r"^#{1,6} ", line):
            current = _heading_text(line)
            assert current not in sections, f"heading {current!r} appears twice in {DOC.name}"
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


def first_table(section: str) -> list[dict[str, str]]:
    """The first Markdown table of a section, as rows keyed by lowercased header cells."""
    lines = section.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("|")), None)
    assert start is not None, "no table in the section"
    block = []
    for line in lines[start:]:
        if not line.lstrip().startswith("|"):
            break
        block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, separator, *rows = block
    assert all(set(cell) <= set(":- ") for cell in separator), "table has no separator row"
    names = [cell.lower() for cell in header]
    for row in rows:
        assert len(row) == len(names), f"table row has {len(row)} cells, header {len(names)}"
    return [dict(zip(names, row, strict=True)) for row in rows]


def columns_table(section: str) -> dict[str, dict[str, str]]:
    """Rows of the section's first table whose first cell is a `name`, keyed by that name."""
    rows = first_table(section)
    first = next(iter(rows[0])) if rows else "column"
    table = {}
    for row in rows:
        match = re.fullmatch(r"`([^`]+)`", row[first])
        if match:
            assert match.group(1) not in table, f"column {match.group(1)} documented twice"
            table[match.group(1)] = row
    return table


def plain(cell: str) -> str:
    """A table cell without backticks, lowercased, with single spaces."""
    return " ".join(cell.replace("`", "").lower().split())


def yes_no(cell: str) -> bool:
    """'yes' or 'no', possibly followed by a qualification ('yes, when ...')."""
    word = re.match(r"[a-z]+", plain(cell))
    assert word and word.group(0) in ("yes", "no"), f"expected yes or no, found {cell!r}"
    return word.group(0) == "yes"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sections(doc) -> dict[str, str]:
    return doc_sections(doc)


def section(sections: dict[str, str], heading: str) -> str:
    assert heading in sections, f"{DOC.name} has no section headed {heading!r}"
    return sections[heading]


# ---------------------------------------------------------------------------------------------
# reading the code


def ddl_tables() -> dict[str, dict[str, dict]]:
    """'schema.table' -> column -> {'type', 'nullable'}, from every create table in the DDL."""
    text = re.sub(r"--[^\n]*", "", DDL.read_text())
    pattern = re.compile(
        r"create\s+(?:unlogged\s+)?table\s+if\s+not\s+exists\s+(\w+)\.(\w+)\s*\((.*?)\)\s*;",
        re.IGNORECASE | re.DOTALL,
    )
    tables = {}
    for schema, name, body in pattern.findall(text):
        columns = {}
        for definition in body.split("\n"):
            definition = definition.strip().rstrip(",").strip()
            if not definition or definition.lower().startswith(DDL_TABLE_CONSTRAINTS):
                continue
            column, *rest = definition.split()
            type_words = []
            for word in rest:
                if word.lower() in DDL_CONSTRAINT_WORDS:
                    break
                type_words.append(word)
            lowered = definition.lower()
            columns[column] = {
                "type": " ".join(type_words).lower(),
                "nullable": "not null" not in lowered and "primary key" not in lowered,
            }
        tables[f"{schema}.{name}"] = columns
    # every create table statement must have been understood, or a table could go unchecked
    statements = re.findall(r"create\s+(?:unlogged\s+)?table", text, re.IGNORECASE)
    assert len(tables) == len(statements), "a create table statement in the DDL was not parsed"
    return tables


def ddl_indexes() -> list[str]:
    return re.findall(r"create\s+index\s+if\s+not\s+exists\s+(\w+)", DDL.read_text(), re.I)


def data_health_columns() -> list[str]:
    """The columns of marts.data_health: the names that the `final` CTE selects."""
    text = DATA_HEALTH_SQL.read_text()
    final = re.search(r"\bfinal\s+as\s+\(\s*select(.*?)\bfrom\b", text, re.DOTALL)
    assert final, "data_health.sql has no `final as (select ... from` CTE"
    names = []
    for line in final.group(1).splitlines():
        line = re.sub(r"--.*", "", line).strip().rstrip(",")
        if line:
            name = re.search(r"(?:\bas\s+|\.)(\w+)$", line)
            assert name, f"cannot tell the column name of {line!r} in data_health.sql"
            names.append(name.group(1))
    return names


def sql_literals(composable) -> list:
    """Every value wrapped in a psycopg2 sql.Literal inside a composed statement."""
    if isinstance(composable, sql.Literal):
        return [composable.wrapped]
    if isinstance(composable, sql.Composed):
        return [value for part in composable.seq for value in sql_literals(part)]
    return []


def quarantine_reasons(source: contract.Source) -> list[str]:
    """Every reason text (or the fixed start of one) that the row-rule statement can write.

    They are taken from the statement that ingestion runs, so a new rule, a new column or a
    reworded reason shows up here without this test knowing how reasons are built.
    """
    statements = [
        ingest._checked_rows_sql(source, "pg_input_is_valid"),
        ingest._mark_duplicates_sql(source),
    ]
    return [
        value
        for statement in statements
        for value in sql_literals(statement)
        if isinstance(value, str) and re.match(r"\w+: \S", value)
    ]


def file_rejection_rules() -> list[str]:
    """The fixed text of every rule that ingest.py passes to FileRejected."""
    rules = []
    for node in ast.walk(ast.parse(INGEST_PY.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "FileRejected"
        ):
            rule = node.args[2] if len(node.args) > 2 else node.keywords[-1].value
            if isinstance(rule, ast.Constant):
                rules.append(rule.value)
            else:
                assert isinstance(rule, ast.JoinedStr), ast.dump(rule)
                fixed = [p.value for p in rule.values if isinstance(p, ast.Constant)]
                rules.append(max(fixed, key=len))
    return rules


# ---------------------------------------------------------------------------------------------
# the input files


def test_every_source_has_a_section_and_no_other_file_does(sections):
    documented = {h.removesuffix(".csv") for h in sections if re.fullmatch(r"[a-z_]+\.csv", h)}
    assert documented == {s.name for s in contract.SOURCES}


@pytest.mark.parametrize("source", contract.SOURCES, ids=lambda s: s.name)
def test_every_contract_column_is_documented_with_its_kind_and_flags(source, sections):
    body = section(sections, f"{source.name}.csv")
    table = columns_table(body)
    assert list(table) == [c.name for c in source.columns], (
        f"the table of {source.name}.csv must list exactly the contract's columns, in order"
    )
    for column in source.columns:
        row = table[column.name]
        assert plain(row["kind"]) == column.kind, f"{source.name}.{column.name}: kind"
        assert yes_no(row["required in header"]) == column.required, (
            f"{source.name}.{column.name}: required in header"
        )
        assert yes_no(row["may be empty"]) == column.nullable, (
            f"{source.name}.{column.name}: may be empty"
        )
        assert row["meaning"], f"{source.name}.{column.name} has no meaning"


@pytest.mark.parametrize("source", contract.SOURCES, ids=lambda s: s.name)
def test_each_source_states_whether_the_file_is_optional_and_its_key(source, sections):
    body = section(sections, f"{source.name}.csv")
    file_line = re.search(r"\*\*File:\*\* (\w+)", body)
    assert file_line, f"{source.name}.csv does not say whether the file is optional"
    expected = "optional" if source.optional_file else "required"
    assert file_line.group(1) == expected, f"{source.name}.csv: the file is {expected}"
    assert f"**Key:** `{source.key}`" in body


def test_the_seed_minimum_names_every_required_column_of_the_required_files(sections):
    body = section(sections, "The minimum to start")
    for source in contract.SOURCES:
        if source.optional_file:
            assert f"`{source.name}.csv`" in body, (
                f"{source.name}.csv is not named among the optional files"
            )
            continue
        assert f"`{source.name}.csv`" in body
        for name in source.required_columns:
            assert f"`{name}`" in body, f"seed minimum lacks {source.name}.{name}"


def test_every_event_type_is_listed(sections):
    table = columns_table(section(sections, "events.csv").split("The event types", 1)[1])
    assert list(table) == list(contract.EVENT_TYPES), "the event types differ from EVENT_TYPES"


def test_every_kind_is_documented_with_its_stored_type(sections):
    rows = first_table(section(sections, "2. How values are parsed"))
    kinds = {plain(row["kind"]): row for row in rows}
    assert list(kinds) == list(contract.PG_TYPES), "the kinds differ from contract.PG_TYPES"
    for kind, pg_type in contract.PG_TYPES.items():
        assert plain(kinds[kind]["stored as"]).startswith(pg_type), f"kind {kind}: stored as"


def test_exactly_the_boolean_words_are_documented(sections):
    rows = first_table(section(sections, "2. How values are parsed"))
    accepted = next(row["accepted"] for row in rows if plain(row["kind"]) == "boolean")
    words = {
        truth: re.findall(r"`([^`]+)`", re.search(rf"{truth}: ([^.]*)\.", accepted).group(1))
        for truth in ("True", "False")
    }
    assert words["True"] == list(ingest.TRUE_WORDS), "the words read as true differ"
    assert words["False"] == list(ingest.FALSE_WORDS), "the words read as false differ"


def test_the_wrong_type_threshold_is_stated(sections):
    rejection = section(sections, "File-level rejection")
    assert f"at least {ingest.WRONG_TYPE_MIN_VALUES} non-empty values" in rejection, (
        f"the document does not say that {ingest.WRONG_TYPE_MIN_VALUES} values reject a file"
    )


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("source", contract.SOURCES, ids=lambda s: s.name)
def test_every_row_rule_reason_appears_verbatim(source, sections):
    rules_section = section(sections, f"Rules for {source.name}.csv")
    for _, reason in ingest._row_rules(source):
        assert f"`{reason}`" in rules_section, f"row rule reason {reason!r} is not documented"
    reasons = quarantine_reasons(source)
    # the statement must have yielded the source's own rules, or this test checks nothing
    assert {reason for _, reason in ingest._row_rules(source)} <= set(reasons)
    for reason in reasons:
        assert reason in rules_section, f"quarantine reason {reason!r} is not documented"


def test_every_file_rejection_rule_is_documented(sections):
    rules = file_rejection_rules()
    assert len(rules) >= 8, f"found only {rules} in ingest.py"
    body = section(sections, "File-level rejection")
    for rule in rules:
        assert rule in body, f"file rejection {rule!r} is not documented"


@pytest.mark.parametrize("alias, table", [("q", "raw.quarantine"), ("l", "raw.load_log")])
def test_the_sample_queries_read_columns_that_exist(alias, table, sections):
    body = section(sections, "Finding quarantined rows")
    assert f"from {table} as {alias}" in body, f"no sample query on {table}"
    used = set(re.findall(rf"\b{alias}\.(\w+)", body))
    unknown = used - set(ddl_tables()[table])
    assert not unknown, f"the sample queries read columns that {table} lacks: {unknown}"


# ---------------------------------------------------------------------------------------------
# the warehouse


def test_every_warehouse_table_is_documented_with_its_columns_and_types(sections):
    tables = ddl_tables()
    assert {"raw.load_log", "raw.quarantine", "staging.sessions", "core.sessions"} <= set(tables)
    for table, columns in tables.items():
        documented = columns_table(section(sections, table))
        assert list(documented) == list(columns), (
            f"{table}: the document must list exactly the DDL's columns, in order"
        )
        for name, ddl in columns.items():
            row = documented[name]
            assert plain(row["type"]) == ddl["type"], f"{table}.{name}: type"
            assert yes_no(row["may be null"]) == ddl["nullable"], f"{table}.{name}: may be NULL"
            assert row["meaning"], f"{table}.{name} has no meaning"


def test_no_table_is_documented_that_the_ddl_does_not_create(sections):
    documented = {h for h in sections if re.fullmatch(r"(raw|staging|core)\.\w+", h)}
    assert documented <= set(ddl_tables())


def test_every_index_is_documented(doc):
    indexes = ddl_indexes()
    assert indexes, "no index found in the DDL"
    for index in indexes:
        assert f"`{index}`" in doc, f"index {index} is not documented"


def test_the_raw_copies_of_the_files_are_documented(sections):
    documented = columns_table(section(sections, "raw.<source>"))
    assert list(documented) == list(RAW_BOOKKEEPING_COLUMNS)
    body = section(sections, "raw.<source>")
    for source in contract.SOURCES:
        assert f"`raw.{source.name}`" in body


def test_the_data_health_mart_is_documented_with_its_columns(sections):
    columns = data_health_columns()
    assert "quarantine_rate" in columns
    documented = list(columns_table(section(sections, "marts.data_health")))
    assert documented == columns, "marts.data_health: the columns differ from data_health.sql"


# ---------------------------------------------------------------------------------------------
# the audit


@pytest.mark.parametrize("suite_path", sorted(SUITES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_expectation_of_every_suite_is_documented(suite_path, sections):
    suite = json.loads(suite_path.read_text())
    rows = first_table(section(sections, suite["name"]))
    documented = [(plain(r["expectation"]).split(" (")[0], plain(r["column"])) for r in rows]
    expected = [(e["type"], e["kwargs"].get("column", "")) for e in suite["expectations"]]
    assert documented == expected, f"{suite['name']}: the document's expectations differ"
    for row, expectation in zip(rows, suite["expectations"], strict=True):
        assert row["rule"] == expectation["notes"], f"{suite['name']}: {expectation['type']}"


def test_the_data_docs_location_is_stated(sections):
    assert "ECOM_HOME/data_docs/index.html" in section(sections, "5. The Great Expectations audit")
