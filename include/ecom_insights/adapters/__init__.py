"""Converters from real exports to the data contract's files (`ecom convert`).

    transactions    order lines of any shop or ERP, columns mapped by options or a YAML file
    online-retail   the UCI Online Retail set (a preset of transactions)
    cdnow           the CDNOW purchase log shipped in the `lifetimes` wheel (a preset)
    clickstream     events as in the "eCommerce behavior data from multi category store" set

docs/bring-your-own-data.md describes the formats, the mapping and the rules. This module
imports nothing heavy (the command line reads its names); the converters import pandas and
DuckDB when called.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = ("transactions", "online-retail", "cdnow", "clickstream")

# The roles a column of a transactions export can be mapped to, as error messages name them.
COLUMN_ROLES = {
    "customer": "the customer id",
    "order": "the order id",
    "timestamp": "the order time",
    "product": "the product id",
    "quantity": "the quantity",
    "unit_price": "the unit price",
    "line_amount": "the line amount",
    "product_name": "the product name",
    "category": "the category",
    "country": "the country",
    "signup_date": "the signup date",
}


class ConvertError(Exception):
    """The export cannot be converted. The message names the file, the row when one row is to
    blame (row 1 is the first row after the header, as in raw.quarantine), the column and the
    rule; nothing is written."""

    def __init__(self, path: Path | str, rule: str, *, row: int | None = None, column=None):
        self.path = str(path)
        self.row = row
        self.column = column
        self.rule = rule
        where = "".join(
            [f"row {row:,}: " if row is not None else "", f"column {column!r}: " if column else ""]
        )
        super().__init__(f"{Path(self.path).name}: {where}{rule}")


def convert(
    format_name: str,
    sources: list[Path],
    out_dir: Path,
    *,
    mapping_file: Path | None = None,
    options: dict | None = None,
    force: bool = False,
    chunk_bytes: int | None = None,
    memory_limit: str | None = None,
):
    """Convert `sources` of `format_name` into the contract's files in `out_dir`; returns the
    ConvertSummary (rows read, kept, skipped by reason, written, figures).

    For transactions and its presets, the mapping is the preset's (if any), then the YAML
    `mapping_file`, then `options` (column roles, rules and dialect keys), each over the one
    before. The clickstream format has fixed columns and takes neither.
    """
    import duckdb

    from ecom_insights.adapters import base
    from ecom_insights.adapters.clickstream import convert_clickstream
    from ecom_insights.adapters.transactions import (
        PRESETS,
        TransactionMapping,
        convert_transactions,
        load_mapping,
        with_options,
    )

    tuning = {
        "chunk_bytes": chunk_bytes or base.CHUNK_BYTES,
        "memory_limit": memory_limit or base.MEMORY_LIMIT,
    }
    options = {k: v for k, v in (options or {}).items() if v not in (None, (), [])}
    if format_name not in FORMATS:
        raise ConvertError(format_name, f"unknown format (known: {', '.join(FORMATS)})")
    try:
        if format_name == "clickstream":
            if mapping_file or options:
                raise ConvertError(
                    mapping_file or "options",
                    "the clickstream format has fixed columns: no mapping to give",
                )
            return convert_clickstream(sources, out_dir, force=force, **tuning)
        mapping = PRESETS.get(format_name, TransactionMapping())
        if mapping_file:
            mapping = load_mapping(mapping_file, mapping)
        mapping = with_options(mapping, options, where="options")
        mapping.check(where=str(mapping_file) if mapping_file else "options")
        return convert_transactions(
            sources, out_dir, mapping, format_name=format_name, force=force, **tuning
        )
    except duckdb.OutOfMemoryException as error:
        limit = tuning["memory_limit"]
        raise ConvertError(
            "--memory-limit",
            f"the scratch store needs more than {limit} ({str(error).splitlines()[0]}): "
            "give it more, e.g. --memory-limit 4GB",
        ) from error
