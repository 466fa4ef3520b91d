-- The warehouse's tables up to the core layer. Idempotent: run before every ingestion.
-- raw      the landed files, every column as text, with file and row number (per batch)
-- staging  this batch's rows that passed every rule, typed and renamed
-- core     the merged history that features, models and marts read
-- marts    built by later DAGs

create schema if not exists raw;
create schema if not exists staging;
create schema if not exists core;
create schema if not exists marts;

-- Audit of every file an ingestion run looked at.
create table if not exists raw.load_log (
    file_sha256        text        not null,
    source             text        not null,
    file_path          text        not null,
    run_id             text        not null,
    logical_date       timestamptz not null,
    status             text        not null,  -- loaded | rejected
    rows_read          bigint      not null default 0,
    rows_loaded        bigint      not null default 0,
    rows_quarantined   bigint      not null default 0,
    message            text,
    primary key (file_sha256, source)
);

-- Rows that broke a row rule: kept with their original text so that nothing is lost.
create table if not exists raw.quarantine (
    source             text        not null,
    file_name          text        not null,
    file_sha256        text        not null,
    row_number         bigint      not null,  -- 1 = the first data row after the header
    reasons            text[]      not null,
    record             jsonb       not null,
    logical_date       timestamptz not null,  -- of the run that first loaded the file
    primary key (file_sha256, source, row_number)
);

-- The files of the batch now in raw.<source> (emptied with them at the start of each run).
create unlogged table if not exists raw.batch_files (
    source       text  not null,
    file_name    text  not null,
    file_sha256  text  not null,
    -- where the row rules re-read the original text of a row that went straight to staging
    file_path    text  not null,
    -- set once the row rules have put this source's good raw rows into staging: a re-run of
    -- the rules must take them out first (and need not look for them otherwise)
    rules_applied  boolean  not null default false,
    primary key (source, file_name)
);

-- Ids in staging and core compare byte by byte (collate "C"): the database's C.UTF-8
-- collation orders them the same way (by code point) and has the same equality, but calls
-- strcoll for every comparison, which made every sort over keys (staging's duplicate check and
-- Great Expectations' uniqueness window, core's primary keys and indexes) 1.3 to 1.6 times
-- slower. A comparison with text in the database's collation (a parameter, a raw column)
-- is done in "C".

-- staging: typed rows of the current batch (unlogged: rebuilt from the files on any rerun)
create unlogged table if not exists staging.customers (
    customer_id          text collate "C" not null,
    age                  integer,
    gender               text,
    location             text,
    signup_date          date    not null,
    acquisition_channel  text,
    _file                text    not null,
    _row_number          bigint  not null
);

create unlogged table if not exists staging.sessions (
    session_id           text collate "C" not null,
    customer_id          text collate "C" not null,
    session_started_at   timestamp      not null,
    session_date         date           not null,
    product_viewed       text,
    browsing_time_sec    double precision,
    purchase_made        boolean        not null,
    purchase_amount      numeric(14,2)  not null,
    pages_viewed         integer,
    added_to_cart        boolean,
    discount_amount      numeric(14,2),
    device               text,
    campaign_id          text collate "C",
    _file                text           not null,
    _row_number          bigint         not null
);

create unlogged table if not exists staging.products (
    product_id    text collate "C" not null,
    product_name  text,
    category      text,
    price         numeric(14,2),
    _file         text   not null,
    _row_number   bigint not null
);

create unlogged table if not exists staging.events (
    event_id     text collate "C" not null,
    session_id   text collate "C" not null,
    customer_id  text collate "C" not null,
    event_time   timestamp  not null,
    event_type   text       not null,
    product_id   text collate "C" not null,
    price        numeric(14,2),
    _file        text       not null,
    _row_number  bigint     not null
);

create unlogged table if not exists staging.campaigns (
    campaign_id  text collate "C" not null,
    name         text,
    channel      text,
    start_date   date  not null,
    end_date     date  not null,
    _file        text   not null,
    _row_number  bigint not null
);

-- core: one row per business key; re-ingesting a file updates rows in place
create table if not exists core.customers (
    customer_id          text collate "C" primary key,
    age                  integer,
    gender               text,
    location             text,
    signup_date          date not null,
    acquisition_channel  text
);

create table if not exists core.sessions (
    session_id           text collate "C" primary key,
    customer_id          text collate "C" not null,
    session_started_at   timestamp      not null,
    session_date         date           not null,
    product_viewed       text,
    browsing_time_sec    double precision,
    purchase_made        boolean        not null,
    purchase_amount      numeric(14,2)  not null,
    pages_viewed         integer,
    added_to_cart        boolean,
    discount_amount      numeric(14,2),
    device               text,
    campaign_id          text collate "C"
);
create index if not exists sessions_customer_date_idx
    on core.sessions (customer_id, session_date);
create index if not exists sessions_date_idx on core.sessions (session_date);

create table if not exists core.products (
    product_id    text collate "C" primary key,
    product_name  text,
    category      text,
    price         numeric(14,2)
);

create table if not exists core.events (
    event_id     text collate "C" primary key,
    session_id   text collate "C" not null,
    customer_id  text collate "C" not null,
    event_time   timestamp  not null,
    event_type   text       not null,
    product_id   text collate "C" not null,
    price        numeric(14,2)
);
create index if not exists events_session_idx on core.events (session_id);
-- the feature store reads a customer's events, and the events of a range of days
create index if not exists events_customer_time_idx on core.events (customer_id, event_time);
create index if not exists events_time_idx on core.events (event_time);

create table if not exists core.campaigns (
    campaign_id  text collate "C" primary key,
    name         text,
    channel      text,
    start_date   date not null,
    end_date     date not null
);

-- Warehouses created before the ids were declared collate "C": convert their id columns (once;
-- the primary keys and indexes are rebuilt). A view that reads such a column blocks the
-- conversion: it is dropped, and its owner recreates it (ecom_insights.features before each
-- build); a partitioned table converts its partitions with it.
create or replace function core.collate_ids_in_c(table_name regclass)
returns void
language plpgsql
as $$
declare
    id_column name;
    view_names text[];
    view_name text;
begin
    for id_column in
        select a.attname
        from pg_attribute a
        where a.attrelid = table_name
          and a.attname in ('customer_id', 'session_id', 'event_id', 'product_id', 'campaign_id')
          and not a.attisdropped
          and a.attcollation <> 'pg_catalog."C"'::regcollation
    loop
        -- names taken before any drop: a view that a cascade dropped is then skipped
        select array_agg(distinct r.ev_class::regclass::text) into view_names
        from pg_depend d
        join pg_rewrite r on r.oid = d.objid
        where d.classid = 'pg_rewrite'::regclass
          and d.refobjid = table_name
          and r.ev_class <> table_name;
        foreach view_name in array coalesce(view_names, '{}') loop
            execute format('drop view if exists %s cascade', view_name);
        end loop;
        execute format(
            'alter table %s alter column %I type text collate "C"', table_name, id_column
        );
        -- the conversion drops the column's statistics: without them the row rules' parent
        -- lookups were planned as merge joins over sorts of every row spilled to disk
        execute format('analyze %s', table_name);
    end loop;
end
$$;

select core.collate_ids_in_c(c.oid::regclass)
from pg_class c
where c.relnamespace in ('staging'::regnamespace, 'core'::regnamespace) and c.relkind = 'r';

-- Whether `value` parses as `type_name`. PostgreSQL 16 has pg_input_is_valid, which ingestion
-- uses directly; this slower stand-in (one subtransaction per call) serves older servers.
create or replace function raw.input_is_valid(value text, type_name text)
returns boolean
language plpgsql
stable
as $$
begin
    execute format('select %L::%s', value, type_name);
    return true;
exception when others then
    return false;
end
$$;
