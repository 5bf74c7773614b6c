"""The ClickHouse schema PULSE creates and migrates (``pulse-tui clickhouse-schema`` prints it).

Tables, and why they are shaped this way (PostHog's ``sharded_events`` is the model: a
ReplacingMergeTree partitioned by month, ordered by team, day, event and a hash of the person):

* ``events``: the seed's columns with the seed's names and meanings (``timestamp_ms`` epoch ms,
  ``user_id`` and the dimensions nullable), plus ``ingest_seq`` (arrival order for the live pane:
  nanoseconds of the insert plus the row's number in it, so a program inserting rows without it
  still gets arrival order) and ``ingest_job``/``ingest_line`` (which import stored the row: a
  batch retried after a crash recognises its own rows, see ``backend.py``).
  - ``PARTITION BY toYYYYMM(day)``: every pane reads a range of days, so whole months are pruned,
    and cleanup by age drops or rewrites only the oldest partitions.
  - ``ORDER BY (site_id, day, event_type, cityHash64(ifNull(user_id, '')), event_id)``: every query filters
    one site and a day range first (the primary index skips the rest); event_type next serves
    the breakdown, the funnel and alert filters; users hashed next keeps one user's rows of a day
    together for the distinct counts; ``event_id`` last makes the sorting key unique per event.
  - ``ReplacingMergeTree``: a belt only. PULSE never stores an event_id twice (the single-writer
    import inserts only ids not yet present, decided by a query on ``event_ids``), so every read
    is exact without ``FINAL`` or waiting for merges; should another program insert a duplicate
    row, background merges fold it away eventually.
* ``event_ids``: every stored event's id with the import that stored it (``ingest_job``,
  ``ingest_line``), kept by a materialized view from ``events`` (so rows other programs insert
  are covered too). ``MergeTree ORDER BY event_id``: the import's "which of these ids are stored
  already?" query (``event_id IN (subquery)``) reads only the granules the primary index points
  at, so its cost follows the batch, not the table (``events`` is ordered by site and day, where
  an id lookup would read the whole column). A plain MergeTree, not Replacing: a repeated row
  (another program inserting an id twice) is harmless to a lookup, and nothing waits on merges.
  ``timestamp_ms`` and ``ingest_seq`` let cleanup delete the ids of the events it deletes with
  the same condition.
* ``users``: the seed's users table; ``ReplacingMergeTree(updated_at)`` ordered by ``user_id``
  (the import upserts: the newest version wins); reads use ``FINAL`` (a small table).
* ``sessions``: the seed's sessions, kept by a materialized view over ``events``
  (``AggregatingMergeTree`` of min/max/sum per session, exact when read with GROUP BY).
* Cohort membership and retention snapshots are keyed to cohort definitions, are small, and are
  written in the same transaction as the definitions: they stay in the SQLite file with the
  cohorts; ClickHouse computes them from the events (``backend.py``).

With a cluster (``clickhouse_cluster = "NAME"``) every statement is ``ON CLUSTER NAME``, the
tables are ``Replicated*`` and named ``*_local``, and a ``Distributed`` table with the plain name
sits in front of each, sharded by user so one user's events stay on one shard.
"""

from __future__ import annotations

# 2: event_ids (the import's id lookup); 3: user_first_seen and the cleaned_* rollups (what
# cleanup keeps of the events it deletes)
SCHEMA_VERSION = 3

DAY = "toDate(intDiv(timestamp_ms, 1000))"

EVENTS_COLUMNS = f"""(
    event_id String,
    site_id LowCardinality(String),
    event_type LowCardinality(String),
    timestamp_ms Int64,
    session_id String,
    user_id Nullable(String),
    url Nullable(String),
    referrer Nullable(String),
    country LowCardinality(Nullable(String)),
    device_type LowCardinality(Nullable(String)),
    created_at Int64,
    ingest_seq UInt64 DEFAULT toUInt64(toUnixTimestamp64Nano(now64(9))) + rowNumberInAllBlocks(),
    ingest_job String DEFAULT '',
    ingest_line UInt64 DEFAULT 0,
    day Date MATERIALIZED {DAY},
    -- a lookup of one event by id reads only the granules that may hold it (the import looks
    -- ids up in event_ids since schema 2; no PULSE query needs this index now)
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1
)"""

USERS_COLUMNS = """(
    user_id String,
    site_id Nullable(String),
    name Nullable(String),
    email Nullable(String),
    company Nullable(String),
    plan Nullable(String),
    created_at Int64,
    updated_at Int64
)"""

SESSIONS_COLUMNS = """(
    site_id LowCardinality(String),
    session_id String,
    user_id SimpleAggregateFunction(any, Nullable(String)),
    first_event_at SimpleAggregateFunction(min, Int64),
    last_event_at SimpleAggregateFunction(max, Int64),
    event_count SimpleAggregateFunction(sum, UInt64),
    created_at SimpleAggregateFunction(min, Int64)
)"""

EVENT_IDS_COLUMNS = """(
    event_id String,
    ingest_job String,
    ingest_line UInt64,
    timestamp_ms Int64,
    ingest_seq UInt64
)"""

# what cleanup keeps of the events it deletes (SPEC 9: first-seen times, and the day rollups
# that let charts and period comparisons outlive raw events for rollup_retention_days):
# written by cleanup from the rows it is about to delete, read beside the remaining events
FIRST_SEEN_COLUMNS = """(
    site_id LowCardinality(String),
    user_id String,
    first_seen_ms SimpleAggregateFunction(min, Int64),
    last_seen_ms SimpleAggregateFunction(max, Int64)
)"""

# the users active per day (acquisition retention's returns), idempotent: a repeat is the same
USER_DAYS_COLUMNS = """(
    site_id LowCardinality(String),
    day_num Int64,
    user_id String
)"""

# ``batch`` (the cleanup pass) is in the key, so a pass interrupted between its inserts and
# its delete removes its own rows and runs again without counting an event twice
CLEANED_DAILY_COLUMNS = """(
    site_id LowCardinality(String),
    day Date,
    batch String,
    events SimpleAggregateFunction(sum, UInt64),
    users AggregateFunction(uniqExact, Nullable(String)),
    sessions AggregateFunction(uniqExact, String)
)"""

CLEANED_DIMS_COLUMNS = """(
    site_id LowCardinality(String),
    day Date,
    dim LowCardinality(String),
    value String,
    batch String,
    events SimpleAggregateFunction(sum, UInt64),
    users AggregateFunction(uniqExact, Nullable(String))
)"""

META_COLUMNS = """(
    key String,
    value String,
    updated_at UInt64
)"""

# name -> (columns, engine, engine args, the rest of the table definition)
TABLES: dict[str, tuple[str, str, str, str]] = {
    "events": (EVENTS_COLUMNS, "ReplacingMergeTree", "",
               "PARTITION BY toYYYYMM(day)\n"
               "ORDER BY (site_id, day, event_type, cityHash64(ifNull(user_id, '')), event_id)"),
    "users": (USERS_COLUMNS, "ReplacingMergeTree", "updated_at", "ORDER BY user_id"),
    "sessions": (SESSIONS_COLUMNS, "AggregatingMergeTree", "", "ORDER BY (site_id, session_id)"),
    "event_ids": (EVENT_IDS_COLUMNS, "MergeTree", "", "ORDER BY event_id"),
    "pulse_meta": (META_COLUMNS, "ReplacingMergeTree", "updated_at", "ORDER BY key"),
    "user_first_seen": (FIRST_SEEN_COLUMNS, "AggregatingMergeTree", "",
                        "ORDER BY (site_id, user_id)"),
    "cleaned_user_days": (USER_DAYS_COLUMNS, "ReplacingMergeTree", "",
                          "ORDER BY (site_id, user_id, day_num)"),
    "cleaned_daily": (CLEANED_DAILY_COLUMNS, "AggregatingMergeTree", "",
                      "ORDER BY (site_id, day, batch)"),
    "cleaned_dims": (CLEANED_DIMS_COLUMNS, "AggregatingMergeTree", "",
                     "ORDER BY (site_id, dim, day, value, batch)"),
}
SHARDING_KEY = {"events": "cityHash64(ifNull(user_id, ''))", "users": "cityHash64(ifNull(user_id, ''))",
                "sessions": "cityHash64(session_id)", "event_ids": "cityHash64(event_id)",
                "pulse_meta": "0", "user_first_seen": "cityHash64(user_id)",
                "cleaned_user_days": "cityHash64(user_id)", "cleaned_daily": "0",
                "cleaned_dims": "0"}


def _ident(name: str) -> str:
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"not a plain ClickHouse name: {name!r}")
    return f"`{name}`"


def ddl(database: str, cluster: str | None = None) -> list[str]:
    """Every statement that creates the schema, in order (idempotent: IF NOT EXISTS)."""
    db = _ident(database)
    on = f" ON CLUSTER {_ident(cluster)}" if cluster else ""
    out = [f"CREATE DATABASE IF NOT EXISTS {db}{on}"]
    for name, (columns, engine, args, rest) in TABLES.items():
        local = f"{name}_local" if cluster else name
        if cluster:
            zk = f"'/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}'"
            engine_sql = f"Replicated{engine}({zk}{', ' + args if args else ''})"
        else:
            engine_sql = f"{engine}({args})"
        out.append(f"CREATE TABLE IF NOT EXISTS {db}.{_ident(local)}{on}\n{columns}\n"
                   f"ENGINE = {engine_sql}\n{rest}")
        if cluster:
            out.append(f"CREATE TABLE IF NOT EXISTS {db}.{_ident(name)}{on}\nAS {db}.{_ident(local)}\n"
                       f"ENGINE = Distributed({_ident(cluster)}, {db}, {_ident(local)}, "
                       f"{SHARDING_KEY[name]})")
    target = "sessions_local" if cluster else "sessions"
    source = "events_local" if cluster else "events"
    out.append(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.`sessions_mv`{on}\n"
        f"TO {db}.{_ident(target)}\nAS SELECT site_id, session_id, any(user_id) AS user_id, "
        "min(timestamp_ms) AS first_event_at, max(timestamp_ms) AS last_event_at, "
        "toUInt64(count()) AS event_count, min(created_at) AS created_at\n"
        f"FROM {db}.{_ident(source)} GROUP BY site_id, session_id")
    ids = "event_ids_local" if cluster else "event_ids"
    out.append(
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.`event_ids_mv`{on}\n"
        f"TO {db}.{_ident(ids)}\nAS SELECT event_id, ingest_job, ingest_line, timestamp_ms, ingest_seq\n"
        f"FROM {db}.{_ident(source)}")
    return out


def ddl_text(database: str = "pulse", cluster: str | None = None) -> str:
    """The DDL as one script for a DBA to review (``pulse-tui clickhouse-schema``)."""
    return "".join(f"{stmt};\n\n" for stmt in ddl(database, cluster))


def ensure_schema(ch: object, cluster: str | None = None) -> int:
    """Create what is missing and record the version (later versions migrate from it here)."""
    run = ch.command  # type: ignore[attr-defined]
    rows = ch.rows  # type: ignore[attr-defined]
    database = ch.database  # type: ignore[attr-defined]
    have = rows("SELECT count() FROM system.tables WHERE database = {db:String} "
                "AND name = 'pulse_meta'", {"db": database})[0][0]
    if have:
        got = rows(f"SELECT argMax(value, updated_at) FROM {_ident(database)}.`pulse_meta` "
                   "WHERE key = 'schema_version'")
        if got and got[0][0] and int(got[0][0]) > SCHEMA_VERSION:
            from pulse_tui.errors import DatabaseError

            raise DatabaseError(f"the ClickHouse schema of {ch.url} is version "  # type: ignore[attr-defined]
                                f"{got[0][0]}, newer than this PULSE ({SCHEMA_VERSION})")
        if got and got[0][0] and int(got[0][0]) == SCHEMA_VERSION:
            return SCHEMA_VERSION
        before = int(got[0][0]) if got and got[0][0] else 0
    else:
        before = 0
    for stmt in ddl(database, cluster):
        run(stmt)
    if 0 < before < 2:
        # event_ids arrived in version 2: its view (just created) covers new rows; the rows
        # stored before it are copied once (an id copied twice is harmless to the lookup)
        db = _ident(database)
        cols = "event_id, ingest_job, ingest_line, timestamp_ms, ingest_seq"
        run(f"INSERT INTO {db}.`event_ids` ({cols}) SELECT {cols} FROM {db}.`events`")
    run(f"INSERT INTO {_ident(database)}.`pulse_meta` (key, value, updated_at) VALUES "
        "('schema_version', {v:String}, toUInt64(toUnixTimestamp64Nano(now64(9))))",
        {"v": str(SCHEMA_VERSION)})
    return SCHEMA_VERSION
