"""Durable call-record jobs: after the call, one record per call in the account's CRM.

A job (``call_records``) is made in the same transaction as the hangup. A process claims ready jobs of the
accounts it has sessions for (``FOR UPDATE SKIP LOCKED`` with a lease, so a crashed process's jobs come back
by themselves), takes the CRM credentials of a session of the answering user (or, for a missed call, of a
user it rang for), writes the record, and tells the call's sessions ``call.logged``. No credentials here:
the job goes back untouched and waits. Expired token: ask that session, try again soon. Transient failure:
back off (``Retry-After`` honoured). Permanent failure: the job is marked failed with the reason. Notes are
appended to the written record, or kept in the job until it is written. The job keeps only what the CRM does
not have yet (CONTRACT §6): the update that records a write or an appended part removes that text from
``note`` (queries record_done, record_note_done), so each part is appended once and no note outlives its
way into the CRM. The first create carries the note as it was then (``note_head`` characters, fixed just
before it is sent); a retry sends that same head again, so a create under an idempotency key (Zendesk)
repeats its first body exactly, and notes typed meanwhile follow as appended parts. The same goes for what the
create is built from beyond the call's own facts: the contact it links (found by the pop's lookup, or asked
again) and its owner (the user mapping as it was), fixed with the head (``first_create`` in the job's data:
ids only, never a name, CONTRACT §6); a retry, and its search for what the lost create wrote, use exactly
those, though the lookup may answer and the mapping may have changed since. Jobs older than
RETENTION_DAYS are purged by the reaper.

Each job runs on its own: an unexpected error in one is logged (``record.failed``) and that job alone is
rescheduled with backoff; a CRM that hangs holds only its own job (``crm_timeout_s``, well inside the lease).
Once the CRM has the record, marking the job done is retried in memory before the job could ever be claimed
(and written) again; if it still fails, ``record.orphaned`` names the CRM record.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from datetime import datetime
from typing import Any, get_args

import asyncpg

from hejcti import logs, models, protocol
from hejcti.crm.base import (
    CallRecord,
    Contact,
    CrmAuthError,
    CrmError,
    CrmPermanentError,
    CrmTimeoutError,
    CrmTransientError,
    Kind,
    LoggedRecord,
    parse_time,
)
from hejcti.errors import DatabaseUnavailableError
from hejcti.lookup import Account, Accounts, Lookups
from hejcti.metrics import Metrics
from hejcti.models import Event
from hejcti.sessions import Hub, Session
from hejcti.store import UNAVAILABLE, q
from hejcti.tasks import Periodic, cancel_and_wait

log = logs.get("workers.records")

#: the lease of a claimed job (query record_claim); a job's CRM part is cut off well before it (``crm_timeout_s``)
LEASE_S = 60
NOT_LOGGED_OFF = "call logging is off for this account"
NOT_LOGGED_FAILED = "the call record could not be written"
MAX_ATTEMPTS = 12
#: marking a written job done: tries and the first pause (doubling) before ``record.orphaned``
DONE_TRIES, DONE_PAUSE_S = 4, 0.5
#: the longest pause a CRM's Retry-After may ask of a job
MAX_RETRY_AFTER_S = 3600.0


def note_held(note: str, body: str | None) -> int:
    """How much of ``note`` a found record's description ends with. The attempt that wrote it sent the note as
    it was then, and notes only grow at the end, a line at a time: the longest such head of today's note."""
    text = (body or "").replace("\r\n", "\n").rstrip()
    ends = [i for i, ch in enumerate(note) if ch == "\n"] + [len(note)]
    return next((end for end in reversed(ends) if note[:end].strip() and text.endswith(note[:end].rstrip())), 0)


def first_create(record: CallRecord, crm: str) -> dict[str, Any]:
    """What a create in ``crm`` is built from beyond the call's own facts, as the job keeps it: the contact's
    ids (what the adapters link a record by: kind, id, parent_id; no name, company or link) and the owner."""
    c = record.contact
    contact = None if c is None else {k: v for k, v in (("crm", c.crm), ("kind", c.kind), ("id", c.id),
                                                        ("parent_id", c.parent_id)) if v is not None}
    return {"crm": crm, "contact": contact, "owner": record.owner}


def as_first_created(record: CallRecord, kept: dict[str, Any]) -> CallRecord:
    """``record`` with the contact and owner its job's first create had (``first_create``)."""
    c = kept.get("contact")
    contact = None
    if isinstance(c, dict) and c.get("kind") in get_args(Kind) and c.get("id"):
        contact = Contact(crm=str(c.get("crm") or ""), kind=c["kind"], id=str(c["id"]),
                          name=str(c["id"]),  # not kept (CONTRACT §6), and no adapter writes it into a record
                          parent_id=str(c["parent_id"]) if c.get("parent_id") else None)
    owner = kept.get("owner")
    return replace(record, contact=contact, owner=str(owner) if owner else None)


def backoff(attempts: int) -> float:
    return min(3600.0, 5.0 * 2 ** max(0, attempts - 1)) * random.uniform(0.8, 1.2)


class Records(Periodic):
    name = "records"

    def __init__(self, *, pool: asyncpg.Pool, hub: Hub, accounts: Accounts, lookups: Lookups, metrics: Metrics,
                 credentials_wait_s: float = 10.0, interval: float = 2.0, batch: int = 20,
                 crm_timeout_s: float = 40.0, round_s: float = 10.0, done_pause_s: float = DONE_PAUSE_S) -> None:
        super().__init__(interval)
        self._pool = pool
        self._hub = hub
        self._accounts = accounts
        self._lookups = lookups
        self._metrics = metrics
        self._batch = batch
        self._wait = credentials_wait_s
        self._crm_timeout = min(crm_timeout_s, LEASE_S - 15.0)  # room for the done update and its retries
        self._round = round_s
        self._done_pause = done_pause_s
        self._running: set[asyncio.Task[None]] = set()
        #: jobs this process wrote whose done update failed: finished without writing again if claimed again
        self._written: dict[int, tuple[LoggedRecord, int]] = {}

    def notice(self, ev: Event) -> None:
        """A hangup was stored: a job may be due in a few seconds."""
        if ev.event == "hangup":
            loop = asyncio.get_running_loop()
            loop.call_later(3.2, self._wake.set)

    async def add_note(self, session: Session, call_id: str, text: str) -> bool | str:
        """``call.note``: keep the text with the call's record job (appended once the record exists).
        True: stored for writing; False: no such call for this user; a string: why it will never be written
        (call logging off for the account, or the record job failed). ``NoteTooLongError``: the call's notes
        would pass what the CRMs take (``protocol.NOTES_MAX_CHARS``); nothing was kept."""
        try:
            row = await self._pool.fetchrow(q("record_note"), session.account_id, call_id, session.sipgate_user, text,
                                            protocol.NOTES_MAX_CHARS, session.user_id)
        except UNAVAILABLE as e:
            raise DatabaseUnavailableError(type(e).__name__) from e
        if row is None or not row["found"]:
            return False
        if not row["log_calls"]:
            log.info("call.note.not_logged", call_id=call_id, account=session.account_id, reason="log_calls_off")
            return NOT_LOGGED_OFF
        if row["state"] is None and row["prior"] != "failed":  # not failed: it did not fit
            left = max(0, protocol.NOTES_MAX_CHARS - (row["prior_chars"] or 0) - (1 if row["prior_chars"] else 0))
            log.info("call.note.too_long", call_id=call_id, account=session.account_id, chars=len(text), left=left)
            raise protocol.NoteTooLongError(f"the notes of a call hold at most {protocol.NOTES_MAX_CHARS} characters "
                                            f"together; {left} are left for this call")
        if row["state"] is None:
            log.info("call.note.not_logged", call_id=call_id, account=session.account_id, reason=row["prior"])
            return NOT_LOGGED_FAILED
        if row["state"] == "done":
            self._wake.set()
        log.info("call.note.stored", call_id=call_id, account=session.account_id, chars=len(text))
        return True

    def _local_accounts(self) -> list[str]:
        return sorted({s.account_id for s in self._hub._all if not s.closed})  # noqa: SLF001

    async def once(self) -> int:
        """Claim as many jobs as there are free slots and run each on its own task; wait for them at most
        ``round_s`` (a job still running then keeps its slot and its lease, the next round goes on)."""
        accounts = self._local_accounts()
        free = self._batch - len(self._running)
        if not accounts or free <= 0:
            return 0
        rows = await self._pool.fetch(q("record_claim"), accounts, free)
        tasks = [asyncio.create_task(self._isolated(r), name=f"records.job.{r['id']}") for r in rows]
        for t in tasks:
            self._running.add(t)
            t.add_done_callback(self._running.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=self._round)
        return len(rows)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the jobs still running (tests, shutdown)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)

    async def stop(self) -> None:
        await super().stop()
        await self.drain(5.0)  # a job half-way through a CRM write had better finish than be retried
        for t in list(self._running):
            await cancel_and_wait(t)

    async def _isolated(self, row: asyncpg.Record) -> None:
        """One job; whatever goes wrong in it stays in it: logged, and the job rescheduled with backoff."""
        try:
            await self._job(row)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001  # a bug or an outage in one job must not stop the others
            attempts = row["attempts"]
            delay = backoff(attempts)
            log.warning("record.failed", record=row["id"], account=row["account_id"], error=type(e).__name__,
                        attempts=attempts, in_s=round(delay, 1))
            try:
                await self._reschedule(row["id"], attempts, delay, type(e).__name__)
            except Exception as again:  # noqa: BLE001  # the lease runs out and the job comes back by itself
                log.warning("record.reschedule.failed", record=row["id"], error=type(again).__name__)

    async def _reschedule(self, job_id: int, attempts: int, delay: float, reason: str) -> None:
        """Try the job again in ``delay`` seconds, or give up once it has had MAX_ATTEMPTS."""
        if attempts >= MAX_ATTEMPTS:
            await self._pool.execute(q("record_fail"), job_id, f"gave up after {attempts} attempts: {reason}")
        else:
            await self._pool.execute(q("record_retry"), job_id, delay, reason)

    async def _crm(self, aw: Any, crm: str) -> Any:
        """A CRM step of a job, cut off at ``crm_timeout_s`` (the adapter's own retries live inside)."""
        try:
            async with asyncio.timeout(self._crm_timeout):
                return await aw
        except TimeoutError as e:  # adapters turn their own timeouts into CrmTimeoutError: this one is ours
            raise CrmTimeoutError(f"{crm} took longer than {self._crm_timeout:g} s", crm=crm) from e

    async def _finish(self, query: str, job_id: int, account: str, crm_record: str | None, *args: Any) -> bool:
        """The update after a CRM write succeeded, retried in memory: failing it would write again."""
        pause = self._done_pause
        for attempt in range(1, DONE_TRIES + 1):
            try:
                await self._pool.execute(query, job_id, *args)
                return True
            except (*UNAVAILABLE, asyncpg.PostgresError, DatabaseUnavailableError) as e:
                if attempt == DONE_TRIES:
                    log.error("record.orphaned", record=job_id, account=account, crm_record=crm_record,
                              error=type(e).__name__, tries=attempt)
                    return False
                log.warning("record.done.retry", record=job_id, error=type(e).__name__, attempt=attempt)
                await asyncio.sleep(pause)
                pause *= 2
        return False  # pragma: no cover

    def _rung(self, account_id: str, data: dict[str, Any]) -> list[Session]:
        """The sessions of the user rows the call rang for (``recipients``), never those of a user removed since
        or of a later holder of the same sipgate id; by sipgate id for a job from before recipients were kept."""
        recipients = data.get("recipients")
        return self._hub.sessions_for(account_id, list(data.get("users") or []),
                                      recipients if isinstance(recipients, list) else None)

    def _sessions_for(self, account_id: str, data: dict[str, Any]) -> list[Session]:
        """Answering user's sessions first; for a missed call, any user it rang for."""
        rung = self._rung(account_id, data)
        by = data.get("answered_by")
        answering = [s for s in rung if s.sipgate_user == by] if by else []
        return answering or rung

    async def _job(self, row: asyncpg.Record) -> None:
        job_id = row["id"]
        data = row["data"] or {}
        account = await self._accounts.get(row["account_id"])
        if account is None:
            return
        note = row["note"] or ""
        if row["state"] == "done":
            self._written.pop(job_id, None)
        elif job_id in self._written:
            # this process wrote the record but could not mark it done: finish that, never write again
            logged, sent = self._written[job_id]
            if await self._finish(q("record_done"), job_id, account.id, logged.record_id, logged.record_id, logged.url, sent):
                self._written.pop(job_id, None)
                self._logged(account.id, account.crm_kind, row, data, logged)
            return
        sessions = self._sessions_for(account.id, data)
        adapter = self._lookups.adapter(account)
        creds = next((s.credentials for s in sessions if s.credentials is not None), None)
        if adapter.needs_credentials and creds is None:
            for s in sessions:
                s.ask_credentials("missing")
            await self._pool.execute(q("record_release"), job_id, 0.0)
            return
        session = next((s for s in sessions if s.credentials == creds), None)
        try:
            if row["state"] == "done":
                await self._append(row, account.id, account.crm_kind, adapter, creds, note)
                return
            # the note as the first create carried it (or will): a retry sends the same body, later notes follow
            head = row["note_head"] if row["note_head"] is not None else len(note)
            record = self._record(row, data, await self._accounts.crm_users(account.id), account.id, note[:head])
            kept = data.get("first_create")
            if not isinstance(kept, dict) or kept.get("crm") != account.crm_kind:
                kept = None  # none sent yet (or to the CRM the account had before: its ids mean nothing here)
            if kept is not None:  # an earlier attempt sent a create: this one is built as that one was
                record = as_first_created(record, kept)
            elif record.contact is None and record.number:
                # the pop's lookup is no longer cached (a restart, or more than five minutes): ask again
                try:
                    found = await self._crm(adapter.lookup(record.number, creds, crm_user=record.owner),
                                            account.crm_kind)
                except (CrmTransientError, CrmPermanentError):
                    found = []
                if found:
                    record = replace(record, contact=found[0])
            earlier = await self._earlier(row, account, adapter, record, creds) if row["attempts"] > 1 else None
            if earlier is not None:  # it holds what its description shows
                logged, sent = earlier, note_held(note[:head], earlier.body)
            else:
                if row["note_head"] is None or kept is None:
                    await self._pool.execute(q("record_first_create"), job_id, head,
                                             first_create(record, account.crm_kind))
                logged = await self._crm(adapter.log_call(record, creds), account.crm_kind)
                # the record made holds the head; one the create found instead (Zendesk), what it shows
                sent = head if logged.body is None else note_held(note[:head], logged.body)
        except CrmAuthError as e:
            if session is not None:
                session.ask_credentials("expired")
            await self._pool.execute(q("record_retry"), job_id, 2.0, str(e))
            self._metrics.crm_errors.labels(account.crm_kind, e.kind).inc()
            return
        except CrmTransientError as e:
            delay = min(e.retry_after, MAX_RETRY_AFTER_S) if e.retry_after is not None else backoff(row["attempts"])
            await self._reschedule(job_id, row["attempts"], delay, str(e))
            self._metrics.crm_errors.labels(account.crm_kind, e.kind).inc()
            log.warning("call.record.retry", record=job_id, account=account.id, crm=account.crm_kind,
                        kind=e.kind, in_s=round(delay, 1), attempts=row["attempts"])
            return
        except (CrmPermanentError, CrmError) as e:
            await self._pool.execute(q("record_fail"), job_id, str(e))
            self._metrics.crm_errors.labels(account.crm_kind, e.kind).inc()
            self._metrics.records.labels(account.crm_kind, "failed").inc()
            log.warning("call.record.failed", record=job_id, account=account.id, crm=account.crm_kind,
                        kind=e.kind, error=str(e))
            return
        if earlier is not None:  # not written twice: the job ends as the lost answer would have ended it
            log.info("call.record.found", record=job_id, account=account.id, crm=account.crm_kind,
                     crm_record=logged.record_id, attempts=row["attempts"])
        else:
            self._metrics.records.labels(account.crm_kind, "written").inc()
            log.info("call.record.written", record=job_id, account=account.id, crm=account.crm_kind,
                     crm_record=logged.record_id)
        if not await self._finish(q("record_done"), job_id, account.id, logged.record_id, logged.record_id, logged.url,
                                  sent):
            self._written[job_id] = (logged, sent)
            return
        self._logged(account.id, account.crm_kind, row, data, logged)

    async def _earlier(self, row: asyncpg.Record, account: Account, adapter: Any, record: CallRecord,
                       creds: Any) -> LoggedRecord | None:
        """What an earlier attempt of this job may have written before its answer was lost. A CRM that will not
        say gets the record written, as without asking."""
        try:
            return await self._crm(adapter.find_logged(record, creds), account.crm_kind)
        except CrmPermanentError as e:
            log.warning("call.record.find_failed", record=row["id"], account=account.id, crm=account.crm_kind,
                        error=str(e))
            return None

    async def _append(self, row: asyncpg.Record, account_id: str, crm: str, adapter: Any, creds: Any,
                      note: str) -> None:
        """Append what the job still holds of the note (only what the CRM does not have yet) and drop it from
        the job; a note typed meanwhile stays for the next round."""
        if note:
            await self._crm(adapter.append_note(row["crm_record_id"], note, creds), crm)
        if await self._finish(q("record_note_done"), row["id"], account_id, row["crm_record_id"], len(note)):
            log.info("call.note.appended", record=row["id"], account=account_id, crm=crm, chars=len(note))

    def _logged(self, account_id: str, crm: str, row: asyncpg.Record, data: dict[str, Any],
                logged: LoggedRecord) -> None:
        call_id = data.get("first_call_id") or row["call_ids"][0]
        self._hub.publish(self._rung(account_id, data), models.logged(call_id, crm, logged.record_id, logged.url))

    def _record(self, row: asyncpg.Record, data: dict[str, Any], crm_users: dict[str, str | None],
                account_id: str, note: str) -> CallRecord:
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
            note=note or None,
        )
