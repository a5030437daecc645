# Copyright (c) nanoclaw.provision contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The session directory a NanoClaw v2 host prepares for an agent container, and what the agent leaves in it.

Facts from upstream at v2.0.64 (read, not copied): the host creates
``data/v2-sessions/<group>/<session>/`` with ``outbox/``, ``inbound.db`` (host
writes; the container opens it read-only) and ``outbound.db`` (the container
writes ``processing_ack``, ``messages_out``, ``session_state``,
``container_state``), both in journal mode DELETE (``src/session-manager.ts``
``initSessionFolder``, ``src/db/session-db.ts`` ``ensureSchema``). A message for
the agent is a ``messages_in`` row with ``status='pending'`` and ``trigger=1``;
the runner acknowledges it in ``processing_ack`` (``processing``, then
``completed``) and touches ``.heartbeat`` while it works
(``container/agent-runner/src/poll-loop.ts``, ``db/messages-in.ts``,
``db/connection.ts``). The tables below carry the columns the runner reads and
writes; this module does not reproduce upstream's schema text.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timezone

INBOUND_TABLES = (
    "CREATE TABLE IF NOT EXISTS messages_in (id TEXT PRIMARY KEY, seq INTEGER UNIQUE, kind TEXT NOT NULL,"
    " timestamp TEXT NOT NULL, status TEXT DEFAULT 'pending', process_after TEXT, recurrence TEXT, series_id TEXT,"
    " tries INTEGER DEFAULT 0, trigger INTEGER NOT NULL DEFAULT 1, platform_id TEXT, channel_type TEXT,"
    " thread_id TEXT, content TEXT NOT NULL, source_session_id TEXT, on_wake INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS delivered (message_out_id TEXT PRIMARY KEY, platform_message_id TEXT,"
    " status TEXT NOT NULL DEFAULT 'delivered', delivered_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS destinations (name TEXT PRIMARY KEY, display_name TEXT, type TEXT NOT NULL,"
    " channel_type TEXT, platform_id TEXT, agent_group_id TEXT)",
    "CREATE TABLE IF NOT EXISTS session_routing (id INTEGER PRIMARY KEY CHECK (id = 1), channel_type TEXT,"
    " platform_id TEXT, thread_id TEXT)",
)
OUTBOUND_TABLES = (
    "CREATE TABLE IF NOT EXISTS messages_out (id TEXT PRIMARY KEY, seq INTEGER UNIQUE, in_reply_to TEXT,"
    " timestamp TEXT NOT NULL, deliver_after TEXT, recurrence TEXT, kind TEXT NOT NULL, platform_id TEXT,"
    " channel_type TEXT, thread_id TEXT, content TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS processing_ack (message_id TEXT PRIMARY KEY, status TEXT NOT NULL, status_changed TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS session_state (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS container_state (id INTEGER PRIMARY KEY CHECK (id = 1), current_tool TEXT,"
    " tool_declared_timeout_ms INTEGER, tool_started_at TEXT, updated_at TEXT NOT NULL)",
)
# The smoke message's channel: the v2 CLI channel's type, a platform id of the smoke's own.
CHANNEL = ("cli", "nanoclaw-provision-smoke")


def _create(path: str, tables: tuple[str, ...]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = DELETE")
        for statement in tables:
            db.execute(statement)
    finally:
        db.close()


def init_session(session: str) -> None:
    """``outbox/``, ``inbound.db`` and ``outbound.db`` as the host creates them (existing files are kept)."""
    os.makedirs(os.path.join(session, "outbox"), mode=0o700, exist_ok=True)
    _create(os.path.join(session, "inbound.db"), INBOUND_TABLES)
    _create(os.path.join(session, "outbound.db"), OUTBOUND_TABLES)


def write_message(session: str, message_id: str, text: str) -> bool:
    """A pending chat message for the agent, and the session's reply routing; False without an inbound.db."""
    path = os.path.join(session, "inbound.db")
    if not os.path.exists(path):
        return False
    db = sqlite3.connect(path, isolation_level=None)
    try:
        seq = (db.execute("SELECT coalesce(max(seq), 0) + 1 FROM messages_in").fetchone() or (1,))[0]
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        content = json.dumps({"text": text, "sender": "nanoclaw.provision smoke test"})
        db.execute(
            "INSERT INTO messages_in (id, seq, kind, timestamp, status, trigger, platform_id, channel_type, content)"
            " VALUES (?, ?, 'chat', ?, 'pending', 1, ?, ?, ?)",
            (message_id, seq, now, CHANNEL[1], CHANNEL[0], content),
        )
        db.execute(
            "INSERT OR REPLACE INTO session_routing (id, channel_type, platform_id, thread_id) VALUES (1, ?, ?, NULL)",
            CHANNEL,
        )
    except sqlite3.Error:
        return False
    finally:
        db.close()
    return True


def ack_status(session: str, message_id: str) -> str | None:
    """The agent's ``processing_ack`` status of ``message_id`` (read-only; None while there is none)."""
    path = os.path.join(session, "outbound.db")
    if not os.path.exists(path):
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=2)
    except sqlite3.Error:
        return None
    try:
        row = db.execute("SELECT status FROM processing_ack WHERE message_id = ?", (message_id,)).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return row[0] if row else None


def replies(session: str) -> list[str]:
    """Texts the agent wrote to ``messages_out``."""
    path = os.path.join(session, "outbound.db")
    if not os.path.exists(path):
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=2)
        try:
            rows = db.execute("SELECT content FROM messages_out ORDER BY seq").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    texts = []
    for (content,) in rows:
        try:
            texts.append(str(json.loads(content).get("text", "")))
        except (ValueError, AttributeError):
            texts.append(str(content))
    return texts
