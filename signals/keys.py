"""Keyed hashes of user and interaction ids: what tombstones and snapshot membership hold.

    key = keys.install(con)            # this store's key; SQL macro keyed_hash(id) on `con`
    keys.keyed(key, "alice")           # the same value in Python

A tombstone must let a later ingest recognise a forgotten user without the store
keeping anything that names them. A plain sha256 of an id does not do that: anyone
with a copy of the store can hash a guess (an email address) and look it up. So every
id the privacy state keeps (`tombstones.user_hash`, `forgotten_interactions.
interaction_hash`, `snapshot_members.user_hash`) is

    keyed(id) = HMAC-SHA256(key, sha256_hex(id))

under a 32-byte key kept OUTSIDE the store file: `$SIGNALS_KEY` (64 hex digits or
base64), else the key file `$SIGNALS_KEY_FILE`, else `<store>.key` beside the store,
created with mode 0600 on first use. A copy of the store alone cannot confirm a guess.
Hashing sha256_hex(id) rather than id lets migration 0004's stores convert their old
unsalted sha256 tombstones without knowing the ids (`install` does it once, under the
key: `settings.id_hash` goes from 'sha256' to SCHEME).

In SQL, `install` defines the temp macros `keyed_hash(id)` and
`keyed_from_sha256(hex)` on the connection (the key travels as session variables,
never as text in the store).

**Back the key up with the store's backups, not inside them.**

If the key is lost: old tombstones can no longer be matched. Re-ingesting an old log
would bring forgotten users back, and their snapshots could no longer be found by
user. So `install` refuses (KeyMissing, naming the fix) when the store holds keyed
rows and neither `$SIGNALS_KEY` nor the key file is there: restore the key file (or
set `$SIGNALS_KEY`). Only if it is lost for good, `install(..., new_key=True)`
(`python -m signals forget --new-key ...`) starts a new key; the old tombstones stay
but match nothing, so forget again every user on your erasure register (the ids live
in your request records, not here) before ingesting old logs. A key that is not the
store's (a wrong `$SIGNALS_KEY`) is refused too: `settings.key_check` holds
HMAC(key, "signals-key-check").

Rotation: an HMAC of an id cannot be re-keyed without the id, so there is no in-place
rotate. To rotate, keep the old key readable, start a new key (`--new-key`), and forget
again every user on your erasure register; then drop the old tombstones
(`DELETE FROM tombstones WHERE ts < <rotation time>`) and destroy the old key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from pathlib import Path

import duckdb

ENV_KEY = "SIGNALS_KEY"
ENV_KEY_FILE = "SIGNALS_KEY_FILE"
SCHEME = "hmac-sha256(sha256)/1"
_CHECK = b"signals-key-check"
_MEMORY_KEYS: dict[int, bytes] = {}      # in-memory stores: one key per connection, this process only


class KeyMissing(ValueError):
    """The store holds keyed hashes but its key is not available (or is not this store's)."""


def store_path(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The file behind `con`'s current database (None for an in-memory one)."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return Path(row[0]).resolve() if row and row[0] else None


def key_file(store: str | os.PathLike | None) -> Path | None:
    """`$SIGNALS_KEY_FILE`, else `<store>.key`."""
    if os.environ.get(ENV_KEY_FILE):
        return Path(os.environ[ENV_KEY_FILE])
    return Path(f"{store}.key") if store else None


def _decode(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise KeyMissing(f"{where} is neither hex nor base64") from None
    if len(key) < 16:
        raise KeyMissing(f"{where} holds {len(key)} bytes; a key needs at least 16 (32 are generated)")
    return key


def keyed(key: bytes, value: str) -> str:
    """HMAC-SHA256(key, sha256_hex(value)) as hex: what the store keeps of an id."""
    return keyed_from_sha256(key, hashlib.sha256(value.encode("utf-8")).hexdigest())


def keyed_from_sha256(key: bytes, digest_hex: str) -> str:
    return hmac.new(key, digest_hex.encode("ascii"), hashlib.sha256).hexdigest()


def _setting(con, key: str):
    row = con.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def _keyed_rows(con) -> int:
    if _setting(con, "id_hash") != SCHEME:
        return 0
    return con.execute("SELECT (SELECT count(*) FROM tombstones) + (SELECT count(*) FROM forgotten_interactions) "
                       "+ (SELECT count(*) FROM snapshot_members WHERE user_hash IS NOT NULL)").fetchone()[0]


def load_key(con: duckdb.DuckDBPyConnection, store: str | os.PathLike | None = None, *,
             new_key: bool = False) -> bytes:
    """This store's key: `$SIGNALS_KEY`, else the key file (created, mode 0600, when the
    store holds no keyed rows yet or `new_key`). Raises KeyMissing naming the fix."""
    store = Path(store).resolve() if store and str(store) != ":memory:" else store_path(con)
    if os.environ.get(ENV_KEY):
        return _decode(os.environ[ENV_KEY], f"${ENV_KEY}")
    path = key_file(store)
    if path is None:                                   # an in-memory store: a key for this connection only
        return _MEMORY_KEYS.setdefault(id(con), secrets.token_bytes(32))
    if path.is_file():
        return _decode(path.read_text(), f"key file {path}")
    if _keyed_rows(con) and not new_key:
        raise KeyMissing(
            f"the store {store} holds keyed tombstones but its key is missing: neither ${ENV_KEY} nor the key file "
            f"{path} is there. Restore {path} from your backup (or set ${ENV_KEY}). Without it, forgotten users "
            f"come back when old logs are re-ingested. Only if the key is lost for good: pass --new-key (then "
            f"forget every user on your erasure register again), see signals/keys.py.")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)           # never replaces a key another process wrote meanwhile
    except FileExistsError:
        return _decode(path.read_text(), f"key file {path}")
    finally:
        tmp.unlink(missing_ok=True)
    return key


def define(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """The SQL macros keyed_hash(id) and keyed_from_sha256(hex) on `con`, under `key`."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    block = key.ljust(64, b"\0")
    con.execute("SET VARIABLE signals_k_ipad = ?", [bytes(b ^ 0x36 for b in block)])
    con.execute("SET VARIABLE signals_k_opad = ?", [bytes(b ^ 0x5C for b in block)])
    con.execute("CREATE OR REPLACE TEMP MACRO keyed_from_sha256(h) AS sha256(getvariable('signals_k_opad') "
                "|| unhex(sha256(getvariable('signals_k_ipad') || encode(h))))")
    con.execute("CREATE OR REPLACE TEMP MACRO keyed_hash(x) AS keyed_from_sha256(sha256(x))")


def install(con: duckdb.DuckDBPyConnection, store: str | os.PathLike | None = None, *,
            new_key: bool = False) -> bytes:
    """Load (or create) the store's key, define the SQL macros on `con`, check the key is
    this store's and convert the rows migration 0004 left unkeyed. Returns the key."""
    key = load_key(con, store, new_key=new_key)
    define(con, key)
    check = keyed_from_sha256(key, _CHECK.decode())
    have = _setting(con, "key_check")
    if have is not None and have != check and not new_key:
        raise KeyMissing(f"the key from {'$' + ENV_KEY if os.environ.get(ENV_KEY) else key_file(store or store_path(con))} "
                         "is not the one this store's tombstones were made with (settings.key_check differs); "
                         "restore the right key file or $SIGNALS_KEY")
    if have != check or _setting(con, "id_hash") != SCHEME:
        own = not _in_transaction(con)
        if own:
            con.execute("BEGIN TRANSACTION")
        try:
            if _setting(con, "id_hash") != SCHEME:
                _convert(con)
            con.execute("INSERT OR REPLACE INTO settings VALUES ('key_check', ?)", [check])
            con.execute("INSERT OR REPLACE INTO settings VALUES ('id_hash', ?)", [SCHEME])
        except BaseException:
            if own:
                con.execute("ROLLBACK")
            raise
        if own:
            con.execute("COMMIT")
    return key


def _in_transaction(con) -> bool:
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:
        return True
    con.execute("ROLLBACK")
    return False


def _convert(con) -> None:
    """Old rows (unsalted sha256 tombstones, plain user ids in snapshot_members) to keyed hashes."""
    con.execute("CREATE OR REPLACE TEMP TABLE k_tomb AS SELECT keyed_from_sha256(user_hash) AS h, ts FROM tombstones")
    con.execute("DELETE FROM tombstones")
    con.execute("INSERT INTO tombstones SELECT h, min(ts) FROM k_tomb GROUP BY h")
    con.execute("CREATE OR REPLACE TEMP TABLE k_tomb AS "
                "SELECT keyed_from_sha256(interaction_hash) AS h, ts FROM forgotten_interactions")
    con.execute("DELETE FROM forgotten_interactions")
    con.execute("INSERT INTO forgotten_interactions SELECT h, min(ts) FROM k_tomb GROUP BY h")
    con.execute("DROP TABLE k_tomb")
    con.execute("UPDATE snapshot_members SET user_hash = keyed_hash(user_id), user_id = NULL "
                "WHERE user_id IS NOT NULL")
