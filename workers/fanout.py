"""Turns stored events into server events for this process's sessions.

A fixed pool of worker tasks drains the local queue the listener fills. For ``newCall`` a worker resolves
the caller through the account's CRM adapter: a cached answer goes out at once; otherwise a per-call task
waits at most LOOKUP_DEADLINE_MS, sends ``call.ringing`` (``resolved:false`` if the CRM is late) and
``call.resolved`` when the answer comes. Events of one call go out in order: ``answer``/``hangup`` wait for
that call's ringing to be sent. Sending is appending bytes to session queues; nothing here awaits a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from hejcti import logs, models
from hejcti.crm.base import Contact, CrmError, rank
from hejcti.errors import DatabaseUnavailableError
from hejcti.lookup import Account, Accounts, Lookups
from hejcti.metrics import Metrics
from hejcti.models import Event
from hejcti.sessions import REPLAYING, Hub, Session
from hejcti.store import Store

log = logs.get("workers.fanout")
UNKNOWN_REGION = "ZZ"  # no home country: every number is shown in international form


def _grouped(sessions: list[Session]) -> dict[str | None, list[Session]]:
    """Sessions by mapped CRM user: each group gets contacts ranked with its own records first."""
    groups: dict[str | None, list[Session]] = {}
    for s in sessions:
        groups.setdefault(s.crm_user, []).append(s)
    return groups


def _public(contacts: list[Contact], crm_user: str | None) -> list[dict[str, Any]]:
    """Ranked for this group's CRM user; an unmapped group gets no other user's records first."""
    return [c.public() for c in rank(contacts, crm_user)]


class Fanout:
    def __init__(self, *, hub: Hub, store: Store, accounts: Accounts, lookups: Lookups, metrics: Metrics,
                 deadline_s: float, workers: int, resume_window_s: int = 300) -> None:
        self.hub = hub
        self.store = store
        self.resume_window = resume_window_s
        self.accounts = accounts
        self.lookups = lookups
        self.metrics = metrics
        self.deadline = deadline_s
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self._n = workers
        self._workers: list[asyncio.Task[None]] = []
        #: calls whose ringing is not out yet: their answer and hangup wait for it (set when it is published)
        self._rung: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: ring-to-pop of calls whose ringing went out, written to ``calls`` in batches off the hot path
        self.pop_flush_s = 1.0
        self._popped: dict[tuple[str, str], tuple[int, bool]] = {}
        self._flusher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"worker-{i}") for i in range(self._n)]
        self._flusher = asyncio.create_task(self._flush_pops(), name="pop-times")

    async def drain(self, timeout: float = 5.0) -> None:
        """Finish what is queued and in flight (SIGTERM), then stop the workers. A lookup still waiting for the
        CRM or for credentials is waited for only while a session is open to receive its answer: at shutdown
        the sessions are closed first, so it would only hold the exit up."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while (not self.queue.empty() or (self._tasks and len(self.hub))) and loop.time() < end:
            await asyncio.sleep(0.02)
        for t in [*self._workers, *self._tasks]:
            t.cancel()
        await asyncio.gather(*self._workers, *self._tasks, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        with contextlib.suppress(DatabaseUnavailableError):
            await self._write_pops()

    async def replay(self, session: Session, after: int) -> None:
        """A resuming session first gets what it missed: events after ``after`` of calls of the last minutes."""
        rows = await self.store.fetch("events_resume", session.account_id, after, self.resume_window,
                                      session.sipgate_user)
        mark = REPLAYING.set(session)  # tasks spawned from here (a lookup's late ringing) inherit it
        try:
            for row in rows:
                await self.handle(Event.from_mapping(row), only=[session])
        finally:
            REPLAYING.reset(mark)
        log.info("session.resumed", session=session.id, after=after, events=len(rows))

    def submit(self, ev: Event) -> None:
        self.queue.put_nowait(ev)
        self.metrics.queue_depth.set(self.queue.qsize())

    async def _work(self) -> None:
        while True:
            ev = await self.queue.get()
            self.metrics.queue_depth.set(self.queue.qsize())
            try:
                await self.handle(ev)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker.failed", event_id=ev.id, call_id=ev.call_id, account=ev.account_id)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- events ----------------------------------------------------------------------------------

    async def handle(self, ev: Event, only: list[Session] | None = None) -> None:
        """Push one event to the sessions of the users it targets (or to ``only``, for a resume)."""
        if ev.event == "dtmf" or ev.is_voicemail_leg:
            return
        # the user ids the event was stored for: a session of a user removed since gets nothing
        recipients = ev.data.get("recipients")
        if only is None:
            sessions = self.hub.sessions_for(ev.account_id, ev.users, recipients)
        else:
            sessions = [s for s in only if recipients is None or s.user_id in recipients]
        if not sessions:
            return
        key = (ev.account_id, ev.call_id)
        if ev.event == "newCall":
            # registered before the first await: another worker may take this call's answer meanwhile
            rung = self._rung[key] = asyncio.get_running_loop().create_future()
            handed_over = False
            try:
                handed_over = await self._ring(ev, sessions, key, rung)
            finally:
                if not handed_over:
                    self._ringing_out(key, rung)
            return
        message = models.answered(ev) if ev.event == "answer" else models.ended(ev)
        pending = self._rung.get(key)
        if pending is not None and not pending.done():
            self._spawn(self._after(pending, sessions, message))
            return
        self.hub.publish(sessions, message)

    def _ringing_out(self, key: tuple[str, str], rung: asyncio.Future[None]) -> None:
        """The call's ringing went out (or never will): its answer and hangup may follow."""
        if not rung.done():
            rung.set_result(None)
        if self._rung.get(key) is rung:
            del self._rung[key]

    async def _after(self, pending: asyncio.Future[None], sessions: list[Session], message: dict[str, Any]) -> None:
        await asyncio.wait({pending})  # never cancels it: other events of the call may wait for it too
        self.hub.publish(sessions, message)

    async def _ring(self, ev: Event, sessions: list[Session], key: tuple[str, str],
                    rung: asyncio.Future[None]) -> bool:
        """Put the ringing out now, or hand it to a task that waits for the CRM (then True)."""
        try:
            account = await self.accounts.get(ev.account_id)
        except DatabaseUnavailableError:
            # the number before pick-up matters more than the match: pop it unresolved, in international form
            log.warning("pop.account_unavailable", call_id=ev.call_id, account=ev.account_id, seq=ev.id)
            self._publish_ringing(ev, UNKNOWN_REGION, sessions, [], False)
            return False
        if account is None:
            return False
        number = ev.number
        if number is None:  # anonymous or not a number: nothing to look up
            self._publish_ringing(ev, account.region, sessions, [], True)
            return False
        contacts = self.lookups.cached(account.id, number)
        if contacts is not None:
            self.metrics.lookup_cache.labels("hit").inc()
            self._publish_ringing(ev, account.region, sessions, contacts, True)
            return False
        self.metrics.lookup_cache.labels("miss").inc()
        task = self._spawn(self._ring_with_deadline(ev, account, number, sessions, key, rung))
        task.add_done_callback(lambda _t: self._ringing_out(key, rung))  # also if it fails or is cancelled
        return True

    async def _ring_with_deadline(self, ev: Event, account: Account, number: str, sessions: list[Session],
                                  key: tuple[str, str], rung: asyncio.Future[None]) -> None:
        deadline = self.deadline if self.lookups.has_credentials(account, sessions) else 0.0
        lookup = self.lookups.start(account, number, sessions)
        done, _ = await asyncio.wait({lookup}, timeout=deadline) if deadline > 0 else (set(), None)
        if done:
            contacts = self._result(lookup)
            self._publish_ringing(ev, account.region, sessions, contacts or [], contacts is not None)
            return
        self._publish_ringing(ev, account.region, sessions, [], False)
        self._ringing_out(key, rung)  # the pop is out: the call's other events need not wait for the CRM
        with contextlib.suppress(Exception):
            await asyncio.shield(lookup)
        contacts = self._result(lookup)
        if contacts is not None:
            live = [s for s in sessions if not s.closed]
            for crm_user, group in _grouped(live).items():
                self.hub.publish(group, models.resolved(ev, _public(contacts, crm_user)))

    @staticmethod
    def _result(task: asyncio.Task[list[Contact]]) -> list[Contact] | None:
        if task.cancelled():
            return None
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, CrmError):
                log.error("crm.lookup.crashed", error=repr(exc))
            return None
        return task.result()

    def _publish_ringing(self, ev: Event, region: str, sessions: list[Session], contacts: list[Contact],
                         resolved: bool) -> None:
        n = 0
        for crm_user, group in _grouped(sessions).items():
            n += self.hub.publish(group, models.ringing(ev, region, _public(contacts, crm_user), resolved))
        log.info("pop.sent", call_id=ev.call_id, account=ev.account_id, seq=ev.id, sessions=n,
                 matches=len(contacts), resolved=resolved)
        if n and REPLAYING.get() is None and len(self._popped) < 10_000:  # bounded while the database is away
            self._popped.setdefault((ev.account_id, ev.call_id), (_ms_since(ev.at), resolved))

    async def _flush_pops(self) -> None:
        while True:
            await asyncio.sleep(self.pop_flush_s)
            try:
                await self._write_pops()
            except DatabaseUnavailableError:
                log.warning("pop.times_unsaved", calls=len(self._popped))
            except Exception:  # noqa: BLE001  (a lost batch of pop times is not worth the writer: log, carry on)
                log.exception("pop.times_failed")

    async def _write_pops(self) -> None:
        """The ring-to-pop times gathered since the last write, in one statement (kept for the next on failure)."""
        if not self._popped:
            return
        batch, self._popped = self._popped, {}
        try:
            await self.store.execute("calls_popped", [k[0] for k in batch], [k[1] for k in batch],
                                     [v[0] for v in batch.values()], [v[1] for v in batch.values()])
        except DatabaseUnavailableError:
            for key, value in batch.items():
                self._popped.setdefault(key, value)
            raise


def _ms_since(at: str) -> int:
    """Milliseconds from a stored event's receipt (the database's clock) to now, never below 0."""
    try:
        then = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return max(0, int((datetime.now(UTC) - then).total_seconds() * 1000))
