"""Durable call-record jobs: after the call, one record per call in the account's CRM.

A job (``call_records``) is made in the same transaction as the hangup. A process claims ready jobs of the
accounts it has sessions for (``FOR UPDATE SKIP LOCKED`` with a lease, so a crashed process's jobs come back
by themselves), takes the CRM credentials of a session of the answering user (or, for a missed call, of a
user it rang for), writes the record, and tells the call's sessions ``call.logged``. No credentials here:
the job goes back untouched and waits. Expired token: ask that session, try again soon. Transient failure:
back off (``Retry-After`` honoured). Permanent failure: the job is marked failed with the reason. Notes are
appended to the written record, or kept in the job until it is written. Jobs older than RETENTION_DAYS are
purged by the reaper.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from hejcti import logs, models
from hejcti.crm.base import (
    CallRecord,
    CrmAuthError,
    CrmError,
    CrmPermanentError,
    CrmTransientError,
    parse_time,
)
from hejcti.lookup import Accounts, Lookups
from hejcti.metrics import Metrics
from hejcti.models import Event
from hejcti.sessions import Hub, Session
from hejcti.store import UNAVAILABLE
from hejcti.tasks import Periodic

log = logs.get("workers.records")

_CLAIM = """
UPDATE call_records r SET lease_until = now() + interval '60 seconds', attempts = attempts + 1, updated_at = now()
 WHERE r.id IN (SELECT id FROM call_records
                 WHERE account_id = ANY($1::text[])
                   AND (state = 'ready' OR note_pending)
                   AND run_after <= now()
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY run_after LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING r.id, r.account_id, r.record_key, r.call_ids, r.state, r.data, r.note, r.note_pending, r.attempts,
          r.crm_record_id, r.crm_url
"""
_RELEASE = """
UPDATE call_records SET lease_until = NULL, attempts = greatest(attempts - 1, 0), run_after = now() + make_interval(secs => $2)
 WHERE id = $1
"""
_DONE = """
UPDATE call_records SET state = 'done', crm_record_id = $2, crm_url = $3, lease_until = NULL, last_error = NULL,
       note_pending = (note IS DISTINCT FROM $4), updated_at = now()
 WHERE id = $1
"""
_NOTE_DONE = """
UPDATE call_records SET note_pending = (note IS DISTINCT FROM $2), lease_until = NULL, updated_at = now() WHERE id = $1
"""
_RETRY = """
UPDATE call_records SET lease_until = NULL, run_after = now() + make_interval(secs => $2), last_error = $3,
       updated_at = now()
 WHERE id = $1
"""
_FAIL = """
UPDATE call_records SET state = CASE WHEN state = 'done' THEN 'done' ELSE 'failed' END, note_pending = false,
       lease_until = NULL, last_error = $2, updated_at = now()
 WHERE id = $1
"""
_NOTE = """
WITH c AS (SELECT hejcti_record_key(account_id, call_id) AS key FROM calls
            WHERE account_id = $1 AND call_id = $2 AND $3 = ANY(users))
INSERT INTO call_records (account_id, record_key, call_ids, note, state)
SELECT $1, c.key, ARRAY[$2], $4, 'waiting' FROM c
ON CONFLICT (account_id, record_key) DO UPDATE SET
    note = CASE WHEN call_records.note IS NULL THEN excluded.note ELSE call_records.note || E'\\n' || excluded.note END,
    note_pending = call_records.state = 'done',
    run_after = CASE WHEN call_records.state = 'done' THEN now() ELSE call_records.run_after END,
    updated_at = now()
RETURNING id, state
"""
MAX_ATTEMPTS = 12


def backoff(attempts: int) -> float:
    return min(3600.0, 5.0 * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


class Records(Periodic):
    name = "records"

    def __init__(self, *, pool: asyncpg.Pool, hub: Hub, accounts: Accounts, lookups: Lookups, metrics: Metrics,
                 credentials_wait_s: float = 10.0, interval: float = 2.0, batch: int = 20) -> None:
        super().__init__(interval)
        self._pool = pool
        self._hub = hub
        self._accounts = accounts
        self._lookups = lookups
        self._metrics = metrics
        self._batch = batch
        self._wait = credentials_wait_s

    def notice(self, ev: Event) -> None:
        """A hangup was stored: a job may be due in a few seconds."""
        if ev.event == "hangup":
            loop = asyncio.get_running_loop()
            loop.call_later(3.2, self._wake.set)

    async def add_note(self, session: Session, call_id: str, text: str) -> bool:
        """``call.note``: keep the text with the call's record job (appended once the record exists)."""
        try:
            row = await self._pool.fetchrow(_NOTE, session.account_id, call_id, session.sipgate_user, text)
        except UNAVAILABLE as e:
            from hejcti.errors import DatabaseUnavailableError

            raise DatabaseUnavailableError(type(e).__name__) from e
        if row is None:
            return False
        if row["state"] == "done":
            self._wake.set()
        log.info("call.note.stored", call_id=call_id, account=session.account_id, chars=len(text))
        return True

    def _local_accounts(self) -> list[str]:
        return sorted({s.account_id for s in self._hub._all if not s.closed})  # noqa: SLF001

    async def once(self) -> int:
        accounts = self._local_accounts()
        if not accounts:
            return 0
        rows = await self._pool.fetch(_CLAIM, accounts, self._batch)
        if rows:
            await asyncio.gather(*(self._job(r) for r in rows))
        return len(rows)

    def _sessions_for(self, account_id: str, data: dict[str, Any]) -> list[Session]:
        """Answering user's sessions first; for a missed call, any user it rang for."""
        by = data.get("answered_by")
        users = [by] if by else list(data.get("users") or [])
        sessions = self._hub.sessions_for(account_id, users)
        if not sessions and by:
            sessions = self._hub.sessions_for(account_id, list(data.get("users") or []))
        return sessions

    async def _job(self, row: asyncpg.Record) -> None:
        job_id = row["id"]
        data = row["data"] or {}
        account = await self._accounts.get(row["account_id"])
        if account is None:
            return
        sessions = self._sessions_for(account.id, data)
        adapter = self._lookups.adapter(account)
        creds = next((s.credentials for s in sessions if s.credentials is not None), None)
        if adapter.needs_credentials and creds is None:
            for s in sessions:
                s.ask_credentials("missing")
            await self._pool.execute(_RELEASE, job_id, 0.0)
            return
        session = next((s for s in sessions if s.credentials == creds), None)
        try:
            if row["state"] == "done":
                await adapter.append_note(row["crm_record_id"], row["note"] or "", creds)
                await self._pool.execute(_NOTE_DONE, job_id, row["note"])
                log.info("call.note.appended", record=job_id, account=account.id, crm=account.crm_kind)
                return
            record = self._record(row, data, await self._accounts.crm_users(account.id), account.id)
            if record.contact is None and record.number:
                # the pop's lookup is no longer cached (a restart, or more than five minutes): ask again
                try:
                    found = await adapter.lookup(record.number, creds, crm_user=record.owner)
                except (CrmTransientError, CrmPermanentError):
                    found = []
                if found:
                    record = replace(record, contact=found[0])
            logged = await adapter.log_call(record, creds)
        except CrmAuthError as e:
            if session is not None:
                session.ask_credentials("expired")
            await self._pool.execute(_RETRY, job_id, 2.0, str(e))
            self._metrics.crm_errors.labels(account.crm_kind, e.kind).inc()
            return
        except CrmTransientError as e:
            delay = e.retry_after if e.retry_after is not None else backoff(row["attempts"])
            if row["attempts"] >= MAX_ATTEMPTS:
                await self._pool.execute(_FAIL, job_id, f"gave up after {row['attempts']} attempts: {e}")
            else:
                await self._pool.execute(_RETRY, job_id, delay, str(e))
            self._metrics.crm_errors.labels(account.crm_kind, e.kind).inc()
            log.warning("call.record.retry", record=job_id, account=account.id, crm=account.crm_kind,
                        kind=e.kind, in_s=round(delay, 1), attempts=row["attempts"])
            return
        except (CrmPermanentError, CrmError) as e:
            await self._pool.execute(_FAIL, job_id, str(e))
            self._metrics.crm_errors.labels(account.crm_kind, e.kind).inc()
            self._metrics.records.labels(account.crm_kind, "failed").inc()
            log.warning("call.record.failed", record=job_id, account=account.id, crm=account.crm_kind,
                        kind=e.kind, error=str(e))
            return
        await self._pool.execute(_DONE, job_id, logged.record_id, logged.url, row["note"])
        self._metrics.records.labels(account.crm_kind, "written").inc()
        log.info("call.record.written", record=job_id, account=account.id, crm=account.crm_kind,
                 crm_record=logged.record_id)
        targets = self._hub.sessions_for(account.id, list(data.get("users") or []))
        self._hub.publish(targets, models.logged(data.get("first_call_id") or row["call_ids"][0], account.crm_kind,
                                                 logged.record_id, logged.url))

    def _record(self, row: asyncpg.Record, data: dict[str, Any], crm_users: dict[str, str | None],
                account_id: str) -> CallRecord:
        by = data.get("answered_by")
        users = list(data.get("users") or [])
        sipgate_user = by or (users[0] if users else None)
        number = data.get("number")
        contacts = self._lookups.cached(account_id, number) if number else None
        started = parse_time(data.get("started_at")) or datetime.now().astimezone()
        ended = parse_time(data.get("ended_at")) or started
        return CallRecord(
            key=row["record_key"],
            call_id=data.get("first_call_id") or row["call_ids"][0],
            direction="out" if data.get("direction") == "out" else "in",
            number=number,
            own_number=data.get("own_number"),
            answered=bool(data.get("answered")),
            voicemail=bool(data.get("voicemail")),
            cause=data.get("cause") or "unknown",
            started_at=started,
            ended_at=ended,
            duration_s=data.get("duration_s"),
            contact=contacts[0] if contacts else None,
            owner=crm_users.get(sipgate_user) if sipgate_user else None,
            sipgate_user=sipgate_user,
            note=row["note"],
        )
