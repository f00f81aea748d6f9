"""The study database: one SQLite file, WAL, every answer committed on its own.

Truth lives only in `images.truth`; readers are known by the sha256 of their secret token
(tokens are 256-bit random, so a plain hash is enough); each reader sees the images in their
own order under their own random ids (`items.opaque`), never a name derived from the source.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from mrisynth.errors import InputError

DB_NAME = "study.sqlite"
SCHEMA_VERSION = "1"
LABELS = ("real", "synthetic")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE images (
    id INTEGER PRIMARY KEY, file TEXT NOT NULL UNIQUE,
    truth TEXT NOT NULL CHECK (truth IN ('real', 'synthetic')),
    source TEXT NOT NULL, patient_key TEXT, sha256 TEXT NOT NULL);
CREATE TABLE readers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL UNIQUE,
    csrf TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('reader', 'organiser')));
CREATE TABLE items (
    reader_id INTEGER NOT NULL REFERENCES readers(id), position INTEGER NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id), opaque TEXT NOT NULL, shown_at REAL,
    PRIMARY KEY (reader_id, position), UNIQUE (reader_id, opaque), UNIQUE (reader_id, image_id));
CREATE TABLE answers (
    reader_id INTEGER NOT NULL, position INTEGER NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('real', 'synthetic')),
    realism INTEGER CHECK (realism BETWEEN 1 AND 5), comment TEXT NOT NULL DEFAULT '',
    answered_at REAL NOT NULL, seconds REAL,
    PRIMARY KEY (reader_id, position),
    FOREIGN KEY (reader_id, position) REFERENCES items(reader_id, position));
"""


_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean_comment(text: str) -> str:
    """A reader's comment as plain lines: control characters (terminal escapes that would act
    when answers.csv is printed) and bidirectional overrides (text shown in another order than
    stored) removed; line breaks and tabs kept."""
    return _CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, full fsync."""
    if readonly:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    else:
        con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")  # an answer acknowledged is on disk
    con.execute("PRAGMA foreign_keys=ON")
    con.row_factory = sqlite3.Row
    return con


def open_study(study: Path, readonly: bool = False) -> sqlite3.Connection:
    """Open STUDY/study.sqlite, refusing a folder that is not a reader study."""
    db = study / DB_NAME
    if not db.is_file():
        raise InputError(
            f"{study}: no {DB_NAME} in it; give a folder made by `mrisynth reader-study create`"
        )
    try:
        con = connect(db, readonly)
        row = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        # Every page read now: a damaged page past the schema would otherwise surface as a
        # traceback halfway through analyze or a 500 to a reader.
        damage = [" ".join(str(r[0]).split()) for r in con.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{db}: not a readable reader-study database ({exc})") from None
    if damage != ["ok"]:
        con.close()
        raise InputError(f"{db}: damaged ({'; '.join(damage)}); restore it from a backup")
    if row is None or row["value"] != SCHEMA_VERSION or not schema_matches(con):
        con.close()
        raise InputError(f"{db}: not a reader-study database of this mrisynth version")
    return con


def _normal(sql: str) -> str:
    return " ".join(sql.replace("(", " ( ").replace(")", " ) ").split()).rstrip(";")


def schema_matches(con: sqlite3.Connection) -> bool:
    """Every table exactly as SCHEMA makes it (its CHECK constraints are what the app and the
    analysis rely on), and no trigger or view (a trigger would run hidden SQL on every answer),
    so a hand-made or altered database file is refused."""
    want = {}
    for stmt in SCHEMA.split(";"):
        if stmt.strip():
            want[stmt.split()[2]] = _normal(stmt)
    rows = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    have = {r["name"]: _normal(r["sql"] or "") for r in rows}
    extra = con.execute("SELECT COUNT(*) FROM sqlite_master WHERE type IN ('trigger', 'view')")
    if extra.fetchone()[0]:
        return False
    return all(have.get(name) == sql for name, sql in want.items())


@dataclass(frozen=True)
class Reader:
    id: int
    name: str
    csrf: str
    role: str


def find_reader(con: sqlite3.Connection, token: str, role: str = "reader") -> Reader | None:
    """The reader (or organiser) holding `token`, or None."""
    if not token or len(token) > 200:
        return None
    row = con.execute(
        "SELECT id, name, csrf, role FROM readers WHERE token_hash = ? AND role = ?",
        (token_hash(token), role),
    ).fetchone()
    return None if row is None else Reader(row["id"], row["name"], row["csrf"], row["role"])


@dataclass(frozen=True)
class Item:
    position: int
    opaque: str
    image_file: str
    total: int


def current_item(con: sqlite3.Connection, reader_id: int) -> Item | None:
    """The reader's first unanswered item (None when they are done)."""
    row = con.execute(
        "SELECT i.position, i.opaque, im.file FROM items i JOIN images im ON im.id = i.image_id "
        "LEFT JOIN answers a ON a.reader_id = i.reader_id AND a.position = i.position "
        "WHERE i.reader_id = ? AND a.position IS NULL ORDER BY i.position LIMIT 1",
        (reader_id,),
    ).fetchone()
    if row is None:
        return None
    return Item(row["position"], row["opaque"], row["file"], count_items(con, reader_id))


def count_items(con: sqlite3.Connection, reader_id: int) -> int:
    return con.execute("SELECT COUNT(*) FROM items WHERE reader_id = ?", (reader_id,)).fetchone()[0]


def count_answers(con: sqlite3.Connection, reader_id: int) -> int:
    q = "SELECT COUNT(*) FROM answers WHERE reader_id = ?"
    return con.execute(q, (reader_id,)).fetchone()[0]


def image_file(con: sqlite3.Connection, reader_id: int, opaque: str) -> tuple[str, str] | None:
    """(file name, sha256 create stored) behind one of this reader's opaque ids (None for
    anyone else's)."""
    row = con.execute(
        "SELECT im.file, im.sha256 FROM items i JOIN images im ON im.id = i.image_id "
        "WHERE i.reader_id = ? AND i.opaque = ?",
        (reader_id, opaque),
    ).fetchone()
    return None if row is None else (row["file"], row["sha256"])


def mark_shown(con: sqlite3.Connection, reader_id: int, position: int) -> None:
    """The answer time runs from the latest showing (a pause does not count)."""
    con.execute(
        "UPDATE items SET shown_at = ? WHERE reader_id = ? AND position = ?",
        (time.time(), reader_id, position),
    )


def save_answer(
    con: sqlite3.Connection,
    reader_id: int,
    opaque: str,
    label: str,
    realism: int | None,
    comment: str,
) -> bool:
    """Commit one answer to the reader's current item; False if `opaque` is not that item
    (already answered, another reader's, or out of order): answers are final."""
    con.execute("BEGIN IMMEDIATE")
    try:
        item = current_item(con, reader_id)
        if item is None or item.opaque != opaque:
            con.execute("ROLLBACK")
            return False
        shown = con.execute(
            "SELECT shown_at FROM items WHERE reader_id = ? AND position = ?",
            (reader_id, item.position),
        ).fetchone()["shown_at"]
        now = time.time()
        seconds = None if shown is None else max(0.0, now - shown)
        con.execute(
            "INSERT INTO answers (reader_id, position, label, realism, comment, answered_at, "
            "seconds) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (reader_id, item.position, label, realism, comment, now, seconds),
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return True


def progress(con: sqlite3.Connection) -> list[dict[str, object]]:
    """Per reader: name, answered, total, last answer time (for the organiser's page)."""
    rows = con.execute(
        "SELECT r.name, (SELECT COUNT(*) FROM items i WHERE i.reader_id = r.id) AS total, "
        "(SELECT COUNT(*) FROM answers a WHERE a.reader_id = r.id) AS answered, "
        "(SELECT MAX(answered_at) FROM answers a WHERE a.reader_id = r.id) AS last "
        "FROM readers r WHERE r.role = 'reader' ORDER BY r.id"
    ).fetchall()
    return [dict(r) for r in rows]
