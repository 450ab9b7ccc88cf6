"""The node's disk: one SQLite database in WAL mode with synchronous commits.

Theory of operation
-------------------
Three things are stored, each written in one SQLite transaction so that a
SIGKILL at any instant leaves either all or none of it:

* the replica's persisted records (votes, view, prepared certificates,
  checkpoints), appended by :meth:`Store.append_records` before the vote
  they record leaves the node, and rewritten by :meth:`Store.replace_records`
  when a stable checkpoint lets old ones go;
* each executed block, by :meth:`Store.commit_block`: its header, commit
  certificate, request payloads and digests, receipts, the index from
  transaction id to (height, position), and the state writes the block made,
  together with the new chain tip;
* the state itself (key/value rows), which a restarting node loads back.

``PRAGMA synchronous=FULL`` makes every commit durable before it returns,
so a record is on disk before the ``Send`` that follows it (persist before
send) and an executed block is never lost.  Everything here runs on the
node's event loop thread: the replica task cannot move on before its write
is durable anyway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from consensus.blocks import BlockHeader, ChainTip, CommittedBlock
from consensus.codec import DecodeError, Limits, decode, encode
from consensus.epochs import ValidatorHistory
from consensus.messages import Request
from consensus.proofs import CommitCertificate
from contracts.results import HeightResults, genesis_results
from node.sdk.errors import ProvenetError

# What this node wrote itself is read back without the counts that bound
# input from elsewhere: a block's receipts are as many values as its
# transactions made, and refusing them would leave the node unable to read
# its own chain.  Sizes stay bounded, by what SQLite holds.
OWN_RECORDS = Limits(
    max_size_bytes=1 << 30,
    max_collection_len=1 << 24,
    max_str_len=1 << 30,
    max_bytes_len=1 << 30,
    max_objects=1 << 30,
    max_containers=1 << 30,
)

# 2: blocks keep the receipts root and results root of their height (contracts.results).
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class ValidatorChange:
    """A block's write of the validator-set record (contracts/validators.py)
    and its state proof, taken right after executing that block: a node can
    prove only its current state, and light clients need every change from
    genesis (GET /v1/validators/history).  One proof per change."""

    height: int
    value: bytes
    # contracts.stateroot.StateProof.to_dict()
    proof: dict[str, object]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    header BLOB NOT NULL,
    certificate BLOB NOT NULL,
    digests BLOB NOT NULL,
    payloads BLOB NOT NULL,
    receipts BLOB NOT NULL,
    state_root BLOB NOT NULL,
    receipts_root BLOB NOT NULL,
    results_root BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txs (id BLOB PRIMARY KEY, height INTEGER NOT NULL, idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key BLOB PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS validator_changes (
    height INTEGER PRIMARY KEY,
    value BLOB NOT NULL,
    proof BLOB NOT NULL
);
"""


class StorageError(ProvenetError, RuntimeError):
    """The database belongs to another chain or schema, or is corrupt; the node must not start."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_storage", message, text=message)


@dataclass(frozen=True)
class StoredBlock:
    block: CommittedBlock
    block_hash: bytes
    # One receipt per request, in block order, as plain dicts (Receipt.to_dict form).
    receipts: tuple[dict[str, object], ...]

    @property
    def height(self) -> int:
        return self.block.header.height

    @property
    def digests(self) -> list[bytes]:
        return [request.digest for request in self.block.requests]


def header_from_dict(fields: object) -> BlockHeader:
    """A stored header (:meth:`BlockHeader.from_dict`); StorageError if corrupt."""
    try:
        return BlockHeader.from_dict(fields, "stored header")
    except DecodeError as exc:
        raise StorageError(str(exc)) from None


def _certificate(raw: object) -> CommitCertificate:
    try:
        return CommitCertificate.from_wire(raw, what="stored certificate")
    except DecodeError as exc:
        raise StorageError(str(exc)) from None


class Store:
    """The SQLite database of one node.  Not thread-safe: one loop owns it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ meta

    def bind_chain(
        self, chain_id: str, genesis_root: bytes, genesis_items: list[tuple[bytes, bytes]]
    ) -> None:
        """Bind a new database to one chain and write its genesis state, in one
        transaction; refuse a database that belongs to another chain."""
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    [
                        ("chain_id", chain_id.encode()),
                        ("genesis_root", genesis_root),
                        ("schema", str(SCHEMA_VERSION).encode()),
                    ],
                )
                self._db.executemany("INSERT OR REPLACE INTO state VALUES (?, ?)", genesis_items)
            return
        if (
            stored.get("chain_id") != chain_id.encode()
            or stored.get("genesis_root") != genesis_root
        ):
            raise StorageError("the data directory holds another chain; refusing to start")
        if stored.get("schema") != str(SCHEMA_VERSION).encode():
            raise StorageError(f"the data directory has schema {stored.get('schema')!r}")

    # ------------------------------------------------------------ records

    def load_records(self) -> list[bytes]:
        rows = self._db.execute("SELECT record FROM records ORDER BY seq").fetchall()
        return [row[0] for row in rows]

    def append_records(self, records: list[bytes]) -> None:
        with self._transaction():
            self._db.executemany("INSERT INTO records (record) VALUES (?)", [(r,) for r in records])

    def replace_records(self, records: list[bytes]) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM records")
            self._db.executemany("INSERT INTO records (record) VALUES (?)", [(r,) for r in records])

    # ------------------------------------------------------------ state

    def load_state(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self._db.execute("SELECT key, value FROM state")

    # ------------------------------------------------------------ blocks

    def commit_block(
        self,
        block: CommittedBlock,
        receipts: list[dict[str, object]],
        new_tx_positions: list[tuple[bytes, int]],
        writes: dict[bytes, bytes | None],
        results: HeightResults,
        history: ValidatorHistory | None = None,
        validator_change: ValidatorChange | None = None,
    ) -> None:
        """Store an executed block, its receipts, state writes and the roots
        of its results (contracts.results), atomically; with ``history``
        when the block changed the validator sets (consensus.epochs), and
        ``validator_change`` when it wrote the validator-set record."""
        header = block.header
        assert results.height == header.height, "results stored under another height"
        with self._transaction():
            self._db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    header.height,
                    header.hash,
                    encode(header.to_dict()),
                    encode(CommitCertificate(block.certificate).to_wire()),
                    b"".join(request.digest for request in block.requests),
                    encode([request.payload for request in block.requests]),
                    encode(receipts),
                    results.state_root,
                    results.receipts_root,
                    results.results_root,
                ),
            )
            self._db.executemany(
                "INSERT INTO txs VALUES (?, ?, ?)",
                [(tx_id, header.height, index) for tx_id, index in new_tx_positions],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO state VALUES (?, ?)",
                [(key, value) for key, value in writes.items() if value is not None],
            )
            self._db.executemany(
                "DELETE FROM state WHERE key = ?",
                [(key,) for key, value in writes.items() if value is None],
            )
            if history is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('validator_history', ?)",
                    (encode(history.to_fields()),),
                )
            if validator_change is not None:
                self._db.execute(
                    "INSERT INTO validator_changes VALUES (?, ?, ?)",
                    (header.height, validator_change.value, encode(validator_change.proof)),
                )

    def validator_changes(self, after_height: int, limit: int) -> list[ValidatorChange]:
        """The first ``limit`` writes of the validator-set record above
        ``after_height``, each with its state proof taken when it was made."""
        rows = self._db.execute(
            "SELECT height, value, proof FROM validator_changes WHERE height > ? "
            "ORDER BY height LIMIT ?",
            (after_height, limit),
        ).fetchall()
        changes = []
        for height, value, proof in rows:
            decoded = decode(proof, OWN_RECORDS)
            if not isinstance(decoded, dict):
                raise StorageError(f"stored validator-set proof at height {height} is corrupt")
            changes.append(ValidatorChange(height, bytes(value), decoded))
        return changes

    def validator_history(self) -> ValidatorHistory | None:
        """The validator sets as of the last block that changed them (its
        ``through_height`` is that block's; every later block left them as
        they are), or None if no block changed them."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'validator_history'").fetchone()
        if row is None:
            return None
        try:
            return ValidatorHistory.from_fields(decode(row[0], OWN_RECORDS))
        except (DecodeError, ValueError) as exc:
            raise StorageError(f"stored validator history is corrupt: {exc}") from None

    def tip(self) -> ChainTip | None:
        row = self._db.execute(
            "SELECT height, hash, header, results_root FROM blocks ORDER BY height DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        header = header_from_dict(decode(row[2], OWN_RECORDS))
        return ChainTip(row[0], row[1], header.time_ms, bytes(row[3]))

    def height(self) -> int:
        row = self._db.execute("SELECT MAX(height) FROM blocks").fetchone()
        return int(row[0] or 0)

    def block(self, height: int) -> StoredBlock | None:
        row = self._db.execute(
            "SELECT hash, header, certificate, payloads, receipts, digests FROM blocks WHERE height = ?",
            (height,),
        ).fetchone()
        if row is None:
            return None
        header = header_from_dict(decode(row[1], OWN_RECORDS))
        certificate = _certificate(decode(row[2], OWN_RECORDS)).commits
        digests = [row[5][i : i + 32] for i in range(0, len(row[5]), 32)]
        payloads = _as_list(decode(row[3], OWN_RECORDS))
        if len(payloads) != len(digests) or not all(isinstance(p, bytes) for p in payloads):
            raise StorageError(f"stored block {height} is corrupt")
        requests = tuple(
            Request(payload, digest)  # type: ignore[arg-type]
            for payload, digest in zip(payloads, digests, strict=True)
        )
        receipts = tuple(_as_dict(receipt) for receipt in _as_list(decode(row[4], OWN_RECORDS)))
        return StoredBlock(CommittedBlock(header, requests, certificate), row[0], receipts)

    def certified_header(self, height: int) -> tuple[BlockHeader, CommitCertificate] | None:
        """Block ``height``'s header and commit certificate, without its payloads."""
        row = self._db.execute(
            "SELECT header, certificate FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        if row is None:
            return None
        header = header_from_dict(decode(row[0], OWN_RECORDS))
        return header, _certificate(decode(row[1], OWN_RECORDS))

    def state_root_at(self, height: int) -> bytes | None:
        """The state root after executing block ``height`` (None if not stored)."""
        row = self._db.execute(
            "SELECT state_root FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def results_root_at(self, height: int) -> bytes | None:
        """The results root of block ``height`` (None if not stored)."""
        row = self._db.execute(
            "SELECT results_root FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def results_at(self, height: int) -> HeightResults | None:
        """What block ``height``'s results root is made of (None if not stored)."""
        row = self._db.execute(
            "SELECT state_root, receipts_root, results_root FROM blocks WHERE height = ?",
            (height,),
        ).fetchone()
        if row is None:
            return None
        previous = self._genesis_results_root() if height == 1 else self.results_root_at(height - 1)
        if previous is None:
            raise StorageError(f"block {height - 1} is missing below stored block {height}")
        results = HeightResults(height, bytes(row[0]), bytes(row[1]), previous)
        if results.results_root != bytes(row[2]):
            raise StorageError(f"stored results of block {height} do not hash to its root")
        return results

    def _genesis_results_root(self) -> bytes:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'genesis_root'").fetchone()
        if row is None:
            raise StorageError("the database is not bound to a chain")
        return genesis_results(bytes(row[0])).results_root

    def tx_position(self, tx_id: bytes) -> tuple[int, int] | None:
        row = self._db.execute("SELECT height, idx FROM txs WHERE id = ?", (tx_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def has_tx(self, tx_id: bytes) -> bool:
        return self._db.execute("SELECT 1 FROM txs WHERE id = ?", (tx_id,)).fetchone() is not None

    # ------------------------------------------------------------ internals

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _as_dict(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise StorageError("stored block is corrupt")
    return value


def _as_list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise StorageError("stored block is corrupt")
    return value
