"""The import kinds: one entry per kind of CSV file PULSE imports (pure: no SQL, no I/O).

An entry holds everything the rest of PULSE needs to know about a kind:

- ``name``: the ``--type`` value, the job's type, the file-name prefix the kind is told by;
- ``columns``: the CSV columns it maps, in the order of the rows handed to its writer, each
  with its value kind (id, text, timestamp, boolean) and whether it is required;
- ``complete_row``: what the row validator does after the column checks (``None``: nothing);
  the validator itself is the column-driven one in ``ingest/parse.py``;
- ``folder``: the inbox subfolder the worker watches for it;
- ``header_marks`` and ``header_rank``: header columns that tell the kind when neither
  ``--type``, the folder nor the file name does (lower ranks are tried first);
- ``writer``: the NAME of the batch writer that stores its rows. Each events backend looks the
  name up in its own table: ``pulse_tui.store.imports.WRITERS`` on SQLite; the ClickHouse
  backend writes ``events`` and ``users`` itself and hands any other writer to the SQLite file.
  A kind whose rows fit an existing writer (for instance a narrower CSV completed into events
  rows by ``complete_row``) therefore touches this file only.

``KINDS`` is the registry, in the order kinds are listed (``--type``, the inbox folders);
:func:`register` adds an entry. Every lookup reads it at call time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pulse_tui.models import member_id_for

# column kinds
ID, TEXT, TS, BOOL = "id", "text", "ts", "bool"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    kind: str
    required: bool = False


Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ImportKind:
    """One kind of import file (the fields are described at the top of this module)."""

    name: str
    columns: tuple[Column, ...]
    writer: str
    folder: str
    header_marks: tuple[str, ...] = ()
    header_rank: int = 100
    complete_row: Callable[[Row], Row] | None = None

    @property
    def site_required(self) -> bool:
        """Rows must name a site (``--site`` stands in for a missing site_id column)."""
        return any(c.name == "site_id" and c.required for c in self.columns)


KINDS: dict[str, ImportKind] = {}


def register(kind: ImportKind) -> ImportKind:
    """Add ``kind`` to the registry (a name or folder already taken is a programming error)."""
    if kind.name in KINDS:
        raise ValueError(f"import kind {kind.name!r} is already registered")
    if any(k.folder == kind.folder for k in KINDS.values()):
        raise ValueError(f"import folder {kind.folder!r} already belongs to another kind")
    KINDS[kind.name] = kind
    return kind


def get(name: str) -> ImportKind:
    """The entry of ``name`` (KeyError when there is none)."""
    return KINDS[name]


def names() -> tuple[str, ...]:
    return tuple(KINDS)


def folders() -> dict[str, str]:
    """Inbox folder name -> kind name."""
    return {k.folder: k.name for k in KINDS.values()}


def folder_of(name: str) -> str:
    """The inbox folder of kind ``name`` (a name no kind has, e.g. a job another program
    wrote, is taken as the folder itself)."""
    kind = KINDS.get(name)
    return kind.folder if kind is not None else name


def folder_list(suffix: str = "") -> str:
    """The inbox folders for a sentence: ``events, users or cohort_members``."""
    shown = [folder + suffix for folder in folders()]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def by_header_rank() -> list[ImportKind]:
    return sorted(KINDS.values(), key=lambda k: k.header_rank)


def by_longest_name() -> list[str]:
    """Kind names, longest first: a name that prefixes another never shadows it."""
    return sorted(KINDS, key=len, reverse=True)


# ---------------------------------------------------------------------------- the kinds

def _fill_member_id(row: Row) -> Row:
    """A member row without member_id gets the stable default (cohort_id, user_id hash)."""
    if row[0] is None:
        return (member_id_for(row[1], row[3]), *row[1:])
    return row


EVENTS = register(ImportKind(
    "events",
    (
        Column("event_id", ID, True),
        Column("site_id", ID, True),
        Column("event_type", TEXT, True),
        Column("timestamp_ms", TS, True),
        Column("session_id", ID, True),
        Column("user_id", ID),
        Column("url", TEXT),
        Column("referrer", TEXT),
        Column("country", TEXT),
        Column("device_type", TEXT),
        Column("created_at", TS),
    ),
    writer="events", folder="events", header_marks=("event_id", "event_type"), header_rank=0,
))

USERS = register(ImportKind(
    "users",
    (
        Column("user_id", ID, True),
        Column("site_id", ID),
        Column("name", TEXT),
        Column("email", TEXT),
        Column("company", TEXT),
        Column("plan", TEXT),
        Column("created_at", TS),
        Column("updated_at", TS),
    ),
    # user_id is in the other kinds' headers too: tried after them
    writer="users", folder="users", header_marks=("user_id",), header_rank=90,
))

COHORT_MEMBERS = register(ImportKind(
    "cohort_members",
    (
        Column("member_id", ID),
        Column("cohort_id", ID, True),
        Column("session_id", ID),
        Column("user_id", ID, True),
        Column("joined_at", TS),
        Column("last_seen_at", TS),
        Column("is_active", BOOL),
    ),
    writer="cohort_members", folder="cohort_members", header_marks=("cohort_id",),
    header_rank=10, complete_row=_fill_member_id,
))
