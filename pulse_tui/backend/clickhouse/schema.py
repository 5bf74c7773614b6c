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
* Rollups, each kept by a materialized view over ``events`` (so every insert, PULSE's or another
  program's, updates them in the same statement) and read with ``GROUP BY`` plus ``-Merge``
  combinators, so they are exact without waiting for background merges. Distinct users and
  sessions are ``uniqExactState``: the exact hash set, merged across days and parts (never
  ``uniqState``, an approximation). Measured at 10M events on 2 cores (docs/benchmarks.md): the
  reports read a few thousand rows instead of scanning millions.
  - ``events_daily`` (``AggregatingMergeTree``, ``ORDER BY (site_id, day)``): events, users and
    sessions of a site's day; the daily report and the totals (a comparison period that ends
    part-way through a day adds that one day from ``events``).
  - ``events_dims`` (``ORDER BY (site_id, dim, value, day)``, small granules because the states
    are wide): events and users per value of each breakdown/top-N dimension (``dim`` names the
    column; NULL and '' are stored as ''). The value before the day keeps each value's days
    together, so the top-N reads the user states of only the N values it ranks first by events.
  - ``events_hourly`` (``ORDER BY (site_id, hour)``, ``hour`` = the UTC hour number): events
    per site and hour, the unfiltered alert backtest's series (SQLite's rollup_hourly). Like
    events_daily it outlives the raw events, so a backtest over hours cleanup deleted counts
    what they had (added after schema version 3 was released: ``ensure_schema`` creates it
    in a store that lacks it and fills it from the events).
  - ``user_days`` (``ORDER BY (site_id, user_id, dayn)``, ``dayn`` = the UTC day number): per
    user and day, the first and last event time and the count. Acquisition retention needs
    only days and each user's first event; a saved cohort's weekly windows start at a member's
    join time, and a window (7 days) can cut a day at one end only, so whether a member has an
    event in it is decided exactly by that day's first and last event times. Cohort criteria
    on event count and first/last seen read it too.
  - Cleanup keeps ``events_daily``, ``events_dims`` and ``events_hourly`` as they are (SPEC 9: rollups outlive
    the raw events for ``rollup_retention_days``; past that their rows go, as on SQLite);
    ``user_days`` describes the events left (cleanup recomputes the days it touched). ``rebuild-rollups`` recomputes them from the events but keeps, as on
    SQLite, the daily and dims rows of days up to cleanup's latest cutoff. Schema version 3
    added them; opening an older store creates them and fills them from the events
    (``ensure_schema``: run while no other process imports).
* What cleanup keeps beside them of the events it deletes: ``user_first_seen`` (each user's
  first and last time, never deleted: first-seen dates, cohort ``joined_at`` and acquisition
  weeks do not move) and ``cleaned_user_days`` (the user-days whose raw events are gone, kept
  ``rollup_retention_days``: retention grids decide them as the SQLite file's rollup days).
* ``url`` and ``referrer`` are ``LowCardinality`` (version 3; country and device_type always were):
  pages and referrers repeat, so each part stores a dictionary of the distinct values and a
  number per row. A cohort condition such as ``url contains '/docs'`` is then evaluated once per
  distinct value instead of once per row (16 ms instead of 110 ms of CPU over 3.3M rows), and
  the column is a third of its size. A store with very many distinct URLs stays correct; the
  dictionaries just stop saving.
* Days are UTC (version 4): ``toDate()`` of a number of seconds takes the session's time zone
  (``session_timezone``, the server's, or the embedded process's ``TZ``), so ``DAY`` names
  ``'UTC'``, and so does every day bound a query computes. Opening a version-3 store moves the
  rows a non-UTC session stored to their UTC day (``day`` is in the sorting key, which no
  mutation may change: the events are copied once into a table of the new definition) and
  recomputes the rollup days after cleanup's latest cutoff.
* No bloom-filter index on ``event_id`` (version 4 drops ``idx_event_id``): every insert paid
  for it and no query uses it since the import looks ids up in ``event_ids``.
* ``events_dims`` is kept by one materialized view per dimension (version 4): grouping each
  inserted block by one LowCardinality column costs less than an ARRAY JOIN of all five as
  strings (4-5 s less CPU for a 10M-row import); the rows are the same, so a rebuild still
  fills the table with ``ROLLUPS``' one statement.
* ``idx_ingest_seq`` (minmax, version 3): the live pane asks for the newest arrivals
  (``ORDER BY ingest_seq DESC LIMIT n``); with the index ClickHouse reads only the granules that
  can hold them (``use_skip_indexes_for_top_k``): 30 ms instead of 130 ms of CPU at 10M rows.
* Cohort membership and retention snapshots are keyed to cohort definitions, are small, and are
  written in the same transaction as the definitions: they stay in the SQLite file with the
  cohorts; ClickHouse computes them from the events (``backend.py``).

With a cluster (``clickhouse_cluster = "NAME"``) every statement is ``ON CLUSTER NAME``, the
tables are ``Replicated*`` and named ``*_local``, and a ``Distributed`` table with the plain name
sits in front of each, sharded by user so one user's events stay on one shard.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("pulse_tui.clickhouse")

# 2: event_ids (the import's id lookup); 3: the rollups kept by materialized views, the
# ingest_seq index, LowCardinality url/referrer, and what cleanup keeps of the events it deletes
# (user_first_seen, cleaned_user_days); 4: every day in UTC whatever the session's time zone,
# no idx_event_id
SCHEMA_VERSION = 4

# the UTC day of an event: toDate() of a number of seconds takes the session's time zone
# (session_timezone, or the server's / the embedded process's TZ) unless it is given one
DAY = "toDate(intDiv(timestamp_ms, 1000), 'UTC')"

# the live pane's "newest arrivals first" (ORDER BY ingest_seq DESC LIMIT n) reads only the
# granules whose range can hold them (use_skip_indexes_for_top_k) instead of every row
SEQ_INDEX = "INDEX idx_ingest_seq ingest_seq TYPE minmax GRANULARITY 1"

EVENTS_COLUMNS = f"""(
    event_id String,
    site_id LowCardinality(String),
    event_type LowCardinality(String),
    timestamp_ms Int64,
    session_id String,
    user_id Nullable(String),
    url LowCardinality(Nullable(String)),
    referrer LowCardinality(Nullable(String)),
    country LowCardinality(Nullable(String)),
    device_type LowCardinality(Nullable(String)),
    created_at Int64,
    ingest_seq UInt64 DEFAULT toUInt64(toUnixTimestamp64Nano(now64(9))) + rowNumberInAllBlocks(),
    ingest_job String DEFAULT '',
    ingest_line UInt64 DEFAULT 0,
    day Date MATERIALIZED {DAY},
    {SEQ_INDEX}
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

DAILY_COLUMNS = """(
    site_id LowCardinality(String),
    day Date,
    events SimpleAggregateFunction(sum, UInt64),
    users AggregateFunction(uniqExact, Nullable(String)),
    sessions AggregateFunction(uniqExact, String)
)"""

DIMS_COLUMNS = """(
    site_id LowCardinality(String),
    dim LowCardinality(String),
    value String,
    day Date,
    events SimpleAggregateFunction(sum, UInt64),
    users AggregateFunction(uniqExact, Nullable(String))
)"""

HOURLY_COLUMNS = """(
    site_id LowCardinality(String),
    day Date,
    hour Int64,
    events SimpleAggregateFunction(sum, UInt64)
)"""

USER_DAYS_COLUMNS = """(
    site_id LowCardinality(String),
    user_id String,
    dayn Int64,
    first_ms SimpleAggregateFunction(min, Int64),
    last_ms SimpleAggregateFunction(max, Int64),
    events SimpleAggregateFunction(sum, UInt64)
)"""

# the breakdown / top-N dimensions kept in events_dims ('' stands for NULL and '')
DIMS = ("event_type", "url", "referrer", "country", "device_type")

EVENT_IDS_COLUMNS = """(
    event_id String,
    ingest_job String,
    ingest_line UInt64,
    timestamp_ms Int64,
    ingest_seq UInt64
)"""

# what cleanup keeps of the events it deletes beside the rollups (SPEC 9: first-seen times,
# never deleted; the user-days whose raw events are gone, kept rollup_retention_days):
# written by cleanup from the rows it is about to delete, read beside user_days
FIRST_SEEN_COLUMNS = """(
    site_id LowCardinality(String),
    user_id String,
    first_seen_ms SimpleAggregateFunction(min, Int64),
    last_seen_ms SimpleAggregateFunction(max, Int64)
)"""

# the user-days cleanup deleted events of (retention decides such a day as the SQLite file
# decides a rollup day whose raw events are gone), idempotent: a repeat is the same
CLEANED_USER_DAYS_COLUMNS = """(
    site_id LowCardinality(String),
    day_num Int64,
    user_id String
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
    "events_daily": (DAILY_COLUMNS, "AggregatingMergeTree", "",
                     "PARTITION BY toYYYYMM(day)\nORDER BY (site_id, day)"),
    "events_dims": (DIMS_COLUMNS, "AggregatingMergeTree", "",
                    "PARTITION BY toYYYYMM(day)\nORDER BY (site_id, dim, value, day)\n"
                    "SETTINGS index_granularity = 1024"),
    "user_days": (USER_DAYS_COLUMNS, "AggregatingMergeTree", "",
                  "ORDER BY (site_id, user_id, dayn)"),
    "events_hourly": (HOURLY_COLUMNS, "AggregatingMergeTree", "",
                      "PARTITION BY toYYYYMM(day)\nORDER BY (site_id, hour)"),
    "pulse_meta": (META_COLUMNS, "ReplacingMergeTree", "updated_at", "ORDER BY key"),
    "user_first_seen": (FIRST_SEEN_COLUMNS, "AggregatingMergeTree", "",
                        "ORDER BY (site_id, user_id)"),
    "cleaned_user_days": (CLEANED_USER_DAYS_COLUMNS, "ReplacingMergeTree", "",
                          "ORDER BY (site_id, user_id, day_num)"),
}
SHARDING_KEY = {"events": "cityHash64(ifNull(user_id, ''))", "users": "cityHash64(ifNull(user_id, ''))",
                "sessions": "cityHash64(session_id)", "event_ids": "cityHash64(event_id)",
                "events_daily": "cityHash64(site_id, day)",
                "events_dims": "cityHash64(site_id, dim, value)",
                "user_days": "cityHash64(user_id)", "pulse_meta": "0",
                "events_hourly": "cityHash64(site_id, day)",
                "user_first_seen": "cityHash64(user_id)", "cleaned_user_days": "cityHash64(user_id)"}

# rollup table -> the SELECT over the events (FROM {src}: a table, or a subquery) that fills it;
# the materialized views run it over each inserted block, a rebuild over the whole table
_DIMS_ARRAY = "[" + ", ".join(f"('{d}', ifNull(toString({d}), ''))" for d in DIMS) + "]"
ROLLUPS: dict[str, str] = {
    "events_daily": (
        f"SELECT site_id, {DAY} AS day, toUInt64(count()) AS events, "
        "uniqExactState(user_id) AS users, uniqExactState(session_id) AS sessions "
        "FROM {src} GROUP BY site_id, day"),
    "events_dims": (
        f"SELECT site_id, d.1 AS dim, d.2 AS value, {DAY} AS day, toUInt64(count()) AS events, "
        f"uniqExactState(user_id) AS users FROM {{src}} ARRAY JOIN {_DIMS_ARRAY} AS d "
        "GROUP BY site_id, dim, value, day"),
    "events_hourly": (
        f"SELECT site_id, {DAY} AS day, intDiv(timestamp_ms, 3600000) AS hour, "
        "toUInt64(count()) AS events FROM {src} GROUP BY site_id, day, hour"),
    "user_days": (
        # e.user_id: the table's column (a bare user_id in WHERE would be the alias, never NULL)
        "SELECT e.site_id AS site_id, assumeNotNull(e.user_id) AS user_id, "
        "intDiv(e.timestamp_ms, 86400000) AS dayn, min(e.timestamp_ms) AS first_ms, "
        "max(e.timestamp_ms) AS last_ms, toUInt64(count()) AS events FROM {src} AS e "
        "WHERE e.user_id IS NOT NULL GROUP BY site_id, user_id, dayn"),
}

# the materialized views that keep the rollups: view -> (rollup table, SELECT). events_dims is
# kept by one view per dimension (schema 4): grouping each block by one LowCardinality column
# costs less than the ARRAY JOIN of all five as strings (at 10M rows 4-5 s less CPU per
# import), and stores the same rows, so ROLLUPS' one statement still refills the table.
ROLLUP_VIEWS: dict[str, tuple[str, str]] = {
    "events_daily_mv": ("events_daily", ROLLUPS["events_daily"]),
    **{f"events_dims_{d}_mv": ("events_dims", (
        f"SELECT site_id, '{d}' AS dim, ifNull({d}, '') AS value, {DAY} AS day, "
        "toUInt64(count()) AS events, uniqExactState(user_id) AS users FROM {src} "
        "GROUP BY site_id, value, day")) for d in DIMS},
    "events_hourly_mv": ("events_hourly", ROLLUPS["events_hourly"]),
    "user_days_mv": ("user_days", ROLLUPS["user_days"]),
}


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
    for view, (name, select) in ROLLUP_VIEWS.items():
        target = f"{name}_local" if cluster else name
        out.append(f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{_ident(view)}{on}\n"
                   f"TO {db}.{_ident(target)}\nAS "
                   + select.format(src=f"{db}.{_ident(source)}"))
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
        if (got and got[0][0] and int(got[0][0]) == SCHEMA_VERSION and _complete(ch, cluster)
                and not _fills_pending(ch)):
            return SCHEMA_VERSION
        before = int(got[0][0]) if got and got[0][0] else 0
    else:
        before = 0
    lacking = _missing(ch, cluster) if before >= 3 else []
    for stmt in ddl(database, cluster):
        run(stmt)
    # a rollup added to this version after stores of it were made (events_hourly): its view
    # covers new rows, the events stored are counted once here; recorded as pending first, so a
    # crash in the middle of the fill has it truncated and filled again on the next open
    fills = [n for n in ROLLUPS if (f"{n}_local" if cluster else n) in lacking]
    fills += [n for n in _fills_pending(ch) if n in ROLLUPS and n not in fills]
    if fills:
        _meta(ch, "rollup_fills_pending", ",".join(fills))
        on = f" ON CLUSTER {_ident(cluster)}" if cluster else ""
        for name in fills:
            local = f"{name}_local" if cluster else name
            run(f"TRUNCATE TABLE IF EXISTS {_ident(database)}.{_ident(local)}{on}")
            run(fill_rollup(database, name))
        _meta(ch, "rollup_fills_pending", "")
    if 0 < before < 2:
        # event_ids arrived in version 2: its view (just created) covers new rows; the rows
        # stored before it are copied once (an id copied twice is harmless to the lookup)
        db = _ident(database)
        cols = "event_id, ingest_job, ingest_line, timestamp_ms, ingest_seq"
        run(f"INSERT INTO {db}.`event_ids` ({cols}) SELECT {cols} FROM {db}.`events`")
    if 0 < before < 3:  # version 3: url/referrer LowCardinality, the ingest_seq index, and the
        # rollups (just created, empty) start from the events stored
        events = _ident("events_local" if cluster else "events")
        on = f" ON CLUSTER {_ident(cluster)}" if cluster else ""
        for table in (("events_local", "events") if cluster else ("events",)):
            for col in ("url", "referrer"):
                run(f"ALTER TABLE {_ident(database)}.{_ident(table)}{on} MODIFY COLUMN {col} "
                    "LowCardinality(Nullable(String)) SETTINGS mutations_sync = 2")
        run(f"ALTER TABLE {_ident(database)}.{events}{on} ADD INDEX IF NOT EXISTS {SEQ_INDEX[6:]}")
        run(f"ALTER TABLE {_ident(database)}.{events}{on} MATERIALIZE INDEX idx_ingest_seq "
            "SETTINGS mutations_sync = 2")
        for name in ROLLUPS:  # recomputed whole (a store half-migrated before holds some)
            local = f"{name}_local" if cluster else name
            run(f"TRUNCATE TABLE IF EXISTS {_ident(database)}.{_ident(local)}{on}")
            run(fill_rollup(database, name))
    if 0 < before < 4:
        _utc_days(ch, cluster)
    run(f"INSERT INTO {_ident(database)}.`pulse_meta` (key, value, updated_at) VALUES "
        "('schema_version', {v:String}, toUInt64(toUnixTimestamp64Nano(now64(9))))",
        {"v": str(SCHEMA_VERSION)})
    return SCHEMA_VERSION


# the materialized views reading events (their SELECTs hold DAY): dropped and created again
# (events_dims_mv: version 3's one view of events_dims)
VIEWS = ("sessions_mv", "event_ids_mv", "events_dims_mv", *ROLLUP_VIEWS)


def _utc_days(ch: Any, cluster: str | None) -> None:
    """Version 4: ``idx_event_id`` goes; ``day`` and the views' day are the UTC day whatever
    the session's time zone. Rows a non-UTC session stored before get their UTC day: ``day``
    is in the sorting key (no mutation may change it), so the events are copied once into a
    table of the new definition that then takes their place (``EXCHANGE TABLES``), and the
    rollup days recomputed (as ``rebuild-rollups``: the rows of days up to cleanup's latest
    cutoff stay as they are).

    Run again after a crash at any step, it ends in the same state: ``utc_days_pending`` in
    ``pulse_meta`` is set before the exchange and cleared after the last rollup refill, and the
    old rows (the copy table after the exchange) are kept until then, so a crash after the
    exchange (when no row has a wrong day any more) still recomputes the rollups."""
    run, db = ch.command, _ident(ch.database)
    on = f" ON CLUSTER {_ident(cluster)}" if cluster else ""
    events = f"{db}.{_ident('events_local' if cluster else 'events')}"
    copy = f"{db}.`events_v4_copy`"
    (pending,), = ch.rows(f"SELECT argMax(value, updated_at) = '1' FROM {db}.`pulse_meta` "
                          "WHERE key = 'utc_days_pending'")
    if not pending:
        run(f"DROP TABLE IF EXISTS {copy}{on} SYNC")  # a copy a crash left half-filled
    run(f"ALTER TABLE {events}{on} DROP INDEX IF EXISTS idx_event_id")
    for table in ((events, f"{db}.`events`") if cluster else (events,)):
        run(f"ALTER TABLE {table}{on} MODIFY COLUMN day Date MATERIALIZED {DAY}")
    for view in VIEWS:
        run(f"DROP VIEW IF EXISTS {db}.{_ident(view)}{on} SYNC")
    (wrong,), = ch.rows(f"SELECT count() FROM {events} WHERE day != {DAY}")
    if int(wrong) and cluster:
        log.warning("%s events of %s have a non-UTC day (stored by a session in another time "
                    "zone); on a cluster they are left as they are", wrong, ch.url)
    elif int(wrong):
        cols = ("event_id, site_id, event_type, timestamp_ms, session_id, user_id, url, referrer, "
                "country, device_type, created_at, ingest_seq, ingest_job, ingest_line")
        run(f"DROP TABLE IF EXISTS {copy} SYNC")
        run(f"CREATE TABLE {copy} AS {events}")
        run(f"INSERT INTO {copy} ({cols}) SELECT {cols} FROM {events}")
        _meta(ch, "utc_days_pending", "1")
        run(f"EXCHANGE TABLES {events} AND {copy}")  # the copy holds the old rows from here
        pending = True
    for stmt in ddl(ch.database, cluster):  # the views again, with the UTC day
        run(stmt)
    if pending and not cluster:
        (cleaned,), = ch.rows(f"SELECT argMax(value, updated_at) FROM {db}.`pulse_meta` "
                              "WHERE key = 'cleaned_before'")  # '' when cleanup never ran
        cutoff_day = int(cleaned or 0) // 86_400_000
        for name in ("events_daily", "events_dims", "events_hourly"):
            if cutoff_day:
                # the rows of days after the cutoff go; they were filled by the events whose
                # old (stored) day is after it, so exactly those are added again, now by their
                # UTC day (an event whose UTC day is the cutoff's joins the kept row of that day)
                run(f"ALTER TABLE {db}.{_ident(name)} DELETE WHERE day > {{d:Date}} "
                    "SETTINGS mutations_sync = 2", {"d": _date(cutoff_day)})
                run(f"INSERT INTO {db}.{_ident(name)} " + ROLLUPS[name].format(
                    src=f"(SELECT * FROM {db}.`events` WHERE event_id IN (SELECT event_id "
                        f"FROM {copy} WHERE day > '{_date(cutoff_day)}'))"))
            else:
                run(f"TRUNCATE TABLE {db}.{_ident(name)}")
                run(fill_rollup(ch.database, name))
        _meta(ch, "utc_days_pending", "")
        run(f"DROP TABLE IF EXISTS {copy} SYNC")


def _fills_pending(ch: Any) -> list[str]:
    """The rollups a fill was started for and did not finish (``rollup_fills_pending``)."""
    (value,), = ch.rows(f"SELECT argMax(value, updated_at) FROM {_ident(ch.database)}."
                        "`pulse_meta` WHERE key = 'rollup_fills_pending'")
    return [n for n in str(value or "").split(",") if n]


def _meta(ch: Any, key: str, value: str) -> None:
    ch.command(f"INSERT INTO {_ident(ch.database)}.`pulse_meta` (key, value, updated_at) VALUES "
               "({k:String}, {v:String}, toUInt64(toUnixTimestamp64Nano(now64(9))))",
               {"k": key, "v": value})


def _date(day_number: int) -> str:
    import datetime

    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day_number)).isoformat()


def _complete(ch: object, cluster: str | None) -> bool:
    """Whether every table of this version is there (a store written by a development build of
    the same version may lack one; the DDL, all IF NOT EXISTS, then adds what is missing)."""
    return not _missing(ch, cluster)


def _missing(ch: object, cluster: str | None) -> list[str]:
    """The tables of this version the store lacks (``*_local`` names on a cluster)."""
    names = [f"{n}_local" if cluster else n for n in TABLES]
    got = {r[0] for r in ch.rows(  # type: ignore[attr-defined]
        "SELECT name FROM system.tables WHERE database = {db:String} "
        "AND name IN {names:Array(String)}", {"db": ch.database, "names": names})}  # type: ignore[attr-defined]
    return [n for n in names if n not in got]


def fill_rollup(database: str, name: str, where: str = "") -> str:
    """INSERT ... SELECT that (re)computes rollup ``name`` from the events (``where``: only
    those rows, e.g. some days)."""
    db = _ident(database)
    src = f"(SELECT * FROM {db}.`events` WHERE {where})" if where else f"{db}.`events`"
    return f"INSERT INTO {db}.{_ident(name)} " + ROLLUPS[name].format(src=src)
