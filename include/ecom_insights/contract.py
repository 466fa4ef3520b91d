"""The data contract: which input files exist, their columns, types and row rules.

One declaration drives the raw, staging and core tables, the ingestion checks and
docs/data-contract.md (a test keeps the document in step with this module).

A column's `kind` names how its text is parsed:
    text, integer, number (decimal), money (decimal, 2 places), boolean
    (true/false/1/0/yes/no/t/f/y/n, any case), date (YYYY-MM-DD or a timestamp whose date is
    taken), timestamp (a date alone means midnight).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PG_TYPES = {
    "text": "text",
    "integer": "integer",
    "number": "double precision",
    "money": "numeric(14,2)",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp",
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    description: str
    required: bool = True  # must be in the file's header
    nullable: bool = True  # may be empty in a row

    @property
    def pg_type(self) -> str:
        return PG_TYPES[self.kind]


@dataclass(frozen=True)
class Source:
    """One input file family: `<name>.csv`, `<name>.csv.gz` or `<name>_*.csv[.gz]`."""

    name: str
    key: str
    description: str
    columns: tuple[Column, ...]
    optional_file: bool = False
    # (column, parent source) pairs: a row whose column names no known parent is an orphan
    parents: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


CUSTOMERS = Source(
    name="customers",
    key="customer_id",
    description="One row per customer.",
    columns=(
        Column("customer_id", "text", "Identifier of the customer.", nullable=False),
        Column("age", "integer", "Age in years, 0 to 120; may be empty."),
        Column("gender", "text", "Free text as exported; may be empty."),
        Column("location", "text", "Country, region or city as exported; may be empty."),
        Column("signup_date", "date", "Day the customer signed up.", nullable=False),
        Column(
            "acquisition_channel",
            "text",
            "Channel that brought the customer (organic, paid_search, ...).",
            required=False,
        ),
    ),
)

SESSIONS = Source(
    name="sessions",
    key="session_id",
    description="One row per browsing session; a purchase is a session with purchase_made true.",
    parents=(("customer_id", "customers"),),
    columns=(
        Column("session_id", "text", "Identifier of the session.", nullable=False),
        Column("customer_id", "text", "The customer who browsed.", nullable=False),
        Column(
            "session_date",
            "timestamp",
            "When the session started: a date or a timestamp (then hour-of-day features exist).",
            nullable=False,
        ),
        Column("product_viewed", "text", "Product (id or name) viewed in the session."),
        Column("browsing_time_sec", "number", "Seconds spent browsing, >= 0."),
        Column(
            "purchase_made", "boolean", "Whether the session ended in an order.", nullable=False
        ),
        Column(
            "purchase_amount",
            "money",
            "Order value, >= 0; required when purchase_made, empty or 0 otherwise.",
        ),
        Column("pages_viewed", "integer", "Pages viewed in the session, >= 0.", required=False),
        Column("added_to_cart", "boolean", "Whether anything was put in the cart.", required=False),
        Column("discount_amount", "money", "Discount applied to the order, >= 0.", required=False),
        Column("device", "text", "desktop, mobile, tablet, ...", required=False),
        Column("campaign_id", "text", "Campaign that brought the session.", required=False),
    ),
)

PRODUCTS = Source(
    name="products",
    key="product_id",
    description="The product catalogue.",
    optional_file=True,
    columns=(
        Column("product_id", "text", "Identifier of the product.", nullable=False),
        Column("product_name", "text", "Display name."),
        Column("category", "text", "Category the product belongs to."),
        Column("price", "money", "List price, >= 0."),
    ),
)

EVENTS = Source(
    name="events",
    key="event_id",
    description="Clickstream events inside sessions: view, cart, remove_from_cart, purchase.",
    optional_file=True,
    parents=(("session_id", "sessions"), ("customer_id", "customers")),
    columns=(
        Column("event_id", "text", "Identifier of the event.", nullable=False),
        Column("session_id", "text", "Session the event belongs to.", nullable=False),
        Column("customer_id", "text", "Customer of the session.", nullable=False),
        Column("event_time", "timestamp", "When the event happened.", nullable=False),
        Column(
            "event_type",
            "text",
            "One of view, cart, remove_from_cart, purchase.",
            nullable=False,
        ),
        Column("product_id", "text", "Product the event concerns.", nullable=False),
        Column("price", "money", "Unit price at the time of the event, >= 0."),
    ),
)

CAMPAIGNS = Source(
    name="campaigns",
    key="campaign_id",
    description="Marketing campaigns and their windows.",
    optional_file=True,
    columns=(
        Column("campaign_id", "text", "Identifier of the campaign.", nullable=False),
        Column("name", "text", "Display name."),
        Column("channel", "text", "email, paid_social, ...."),
        Column("start_date", "date", "First day of the campaign.", nullable=False),
        Column("end_date", "date", "Last day of the campaign, >= start_date.", nullable=False),
    ),
)

# In load order: parents before children, so that orphan checks see this batch's parents.
SOURCES: tuple[Source, ...] = (CUSTOMERS, PRODUCTS, CAMPAIGNS, SESSIONS, EVENTS)
SOURCES_BY_NAME = {s.name: s for s in SOURCES}

EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
