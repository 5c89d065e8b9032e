"""The durable response cache of the teacher client: SQLite in WAL mode, one row per request key.

A request key is the SHA-256 of the model, the messages and every sampling parameter (max_tokens, temperature,
stop), so a rerun finds exactly the responses it already paid for and sends zero requests for them. Each record also
carries its prompt identity (`prompt_key`: the model, messages, dialect and effort, not max_tokens/stop/temperature;
indexed), so a run whose endpoint sets `resend_statuses` reuses the newest answer to the same prompt under other
sampling parameters (`newest_by_prompt`); files written before that column are filled in from each row's stored
request on first open. Each record is written in its own transaction: a process killed at any moment loses at most
the requests in flight, never a half-written record. Submitted Batch API jobs are recorded too (`batches` table), so
a killed run resumes polling the batches it already paid for instead of submitting them again. The API key never
enters this file: only requests (model, messages, sampling parameters) and responses are stored.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

# the keys are part of the wire format: one definition
from ..chat_api.wire import prompt_key_of_json, request_key

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
    prompt_key: str | None = None   # prompt identity (`ChatRequest.prompt_key`); None: computed by `put`


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
        if "prompt_key" not in columns:
            try:
                self.conn.execute("ALTER TABLE responses ADD COLUMN prompt_key TEXT")
            except sqlite3.OperationalError:
                pass
        self.conn.execute("CREATE INDEX IF NOT EXISTS responses_prompt_key ON responses (prompt_key, created_at)")
        self._backfill_prompt_keys()

    def _backfill_prompt_keys(self, chunk: int = 10_000) -> None:
        """Fill `prompt_key` of rows written before the column (or by an older client) from their stored request;
        a row whose request cannot be read gets '' (matches no prompt, never read again)."""
        while rows := self.conn.execute("SELECT key, request_json FROM responses WHERE prompt_key IS NULL LIMIT ?",
                                        (chunk,)).fetchall():
            updates = []
            for key, text in rows:
                try:
                    updates.append((prompt_key_of_json(text), key))
                except (ValueError, TypeError, KeyError, AttributeError):
                    updates.append(("", key))
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("UPDATE responses SET prompt_key = ? WHERE key = ? AND prompt_key IS NULL",
                                      updates)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

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

    def newest_by_prompt(self, prompt_keys: Iterable[str], exclude_statuses: Iterable[str] = ()
                         ) -> dict[str, CachedResponse]:
        """{prompt key: its newest record whose status is not excluded}, for the prompt keys that have one."""
        keys = [k for k in dict.fromkeys(prompt_keys) if k]
        excluded = sorted(set(exclude_statuses))
        cols = ", ".join(CachedResponse.__dataclass_fields__)
        out: dict[str, CachedResponse] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            where = f"prompt_key IN ({','.join('?' * len(chunk))})"
            where += f" AND status NOT IN ({','.join('?' * len(excluded))})" if excluded else ""
            rows = self.conn.execute(f"SELECT {cols} FROM responses WHERE {where} ORDER BY created_at, rowid",
                                     chunk + excluded).fetchall()
            for row in rows:                     # ascending: the newest record of a prompt is written last
                rec = CachedResponse(*row)
                out[rec.prompt_key] = rec
        return out

    def put(self, record: CachedResponse) -> None:
        """Insert or replace one record in one transaction (a later answer replaces an `error` record)."""
        record.created_at = record.created_at or time.time()
        if record.prompt_key is None:
            try:
                record.prompt_key = prompt_key_of_json(record.request_json)
            except (ValueError, TypeError, KeyError, AttributeError):
                record.prompt_key = ""
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
