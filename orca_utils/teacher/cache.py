"""The durable response cache of the teacher client: SQLite in WAL mode, one row per request key.

A request key is the SHA-256 of the model, the messages and every sampling parameter (max_tokens, temperature,
stop), so a rerun finds exactly the responses it already paid for and sends zero requests for them. Each record is
written in its own transaction: a process killed at any moment loses at most the requests in flight, never a
half-written record. Submitted Batch API jobs are recorded too (`batches` table), so a killed run resumes polling
the batches it already paid for instead of submitting them again. The API key never enters this file: only
requests (model, messages, sampling parameters) and responses are stored.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ..chat_api.wire import request_key   # the key is part of the wire format: one definition

__all__ = ["CachedResponse", "ResponseCache", "request_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request_json TEXT NOT NULL,
    status TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL,
    via TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    keys_json TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass
class CachedResponse:
    key: str
    model: str
    request_json: str
    status: str              # ok | truncated | refused | content_filter | empty | error
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    attempts: int
    via: str                 # "chat" or "batch:<batch id>"
    created_at: float = 0.0
    reasoning_tokens: int = 0   # hidden reasoning (usage.completion_tokens_details.reasoning_tokens), in ct


class ResponseCache:
    """`ResponseCache(path)`: get/put records by key; safe to reopen after a crash."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit; every write below is its own explicit transaction.
        self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: durable against process kills
        self.conn.executescript(_SCHEMA)
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(responses)")}
        if "reasoning_tokens" not in columns:         # caches written before the column existed
            try:
                self.conn.execute("ALTER TABLE responses ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0")
            except sqlite3.OperationalError:          # another process added it first
                pass

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        keys = list(dict.fromkeys(keys))
        out: dict[str, CachedResponse] = {}
        cols = ", ".join(CachedResponse.__dataclass_fields__)
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows = self.conn.execute(f"SELECT {cols} FROM responses WHERE key IN ({','.join('?' * len(chunk))})",
                                     chunk).fetchall()
            out.update({r[0]: CachedResponse(*r) for r in rows})
        return out

    def put(self, record: CachedResponse) -> None:
        """Insert or replace one record in one transaction (a later answer replaces an `error` record)."""
        record.created_at = record.created_at or time.time()
        values = asdict(record)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(f"INSERT OR REPLACE INTO responses ({', '.join(values)}) "
                              f"VALUES ({', '.join('?' * len(values))})", list(values.values()))
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def status_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, COUNT(*) FROM responses GROUP BY status").fetchall())

    # ---- Batch API jobs ---------------------------------------------------------------------------------
    def add_batch(self, batch_id: str, requests: dict[str, str]) -> None:
        """Record a submitted batch: {request key: request JSON} (what to store its answers under)."""
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, 'submitted', ?)",
                          (batch_id, json.dumps(requests), time.time()))
        self.conn.execute("COMMIT")

    def open_batches(self) -> dict[str, dict[str, str]]:
        """Batches submitted but not yet collected: {batch id: {request key: request JSON}}."""
        rows = self.conn.execute("SELECT batch_id, keys_json FROM batches WHERE status = 'submitted'").fetchall()
        return {b: json.loads(k) for b, k in rows}

    def close_batch(self, batch_id: str, status: str = "collected") -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("UPDATE batches SET status = ? WHERE batch_id = ?", (status, batch_id))
        self.conn.execute("COMMIT")
