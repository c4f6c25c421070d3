"""Extension sessions of this process and the hub that finds them.

Each session has a bounded queue of encoded frames and its own writer task: the fan-out only appends
bytes and never awaits a socket. A session whose queue reaches the limit is closed with 4001 (reconnect
and resume) and the others carry on unslowed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from hejcti import logs, protocol
from hejcti.crm.base import Credentials
from hejcti.metrics import Metrics
from hejcti.tasks import cancel_and_wait
from hejcti.tokens import new_id

log = logs.get("hejcti.sessions")
#: the session whose resume replay is running in this context (its sends are not held back)
REPLAYING: ContextVar[Session | None] = ContextVar("replaying", default=None)
K = TypeVar("K")
SEQ_WINDOW = 256  # recent seqs a session remembers, so that a resume replay and live events are not sent twice


class Session:
    def __init__(self, ws: web.WebSocketResponse, *, user_id: str, account_id: str, sipgate_user: str,
                 crm_user: str | None, limit: int, metrics: Metrics, token_hash: bytes = b"") -> None:
        self.id = new_id("ses")
        self.ws = ws
        self.user_id = user_id
        self.token_hash = token_hash  # the hash of the token it authenticated with: a revocation names it
        self.account_id = account_id
        self.sipgate_user = sipgate_user
        self.crm_user = crm_user
        self.credentials: Credentials | None = None
        self.credentials_changed = asyncio.Event()
        self.asked: set[str] = set()  # reasons already asked for with crm.credentials_required
        self.sent_seqs: set[int] = set()  # for resume: an event is sent once even if replay and live overlap
        self._limit = limit
        self._queue: deque[bytes] = deque()
        self._held: list[tuple[bytes, int | None]] | None = None  # live frames held during a resume replay
        self._wake = asyncio.Event()
        self._metrics = metrics
        self.closed = False
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.transport: asyncio.BaseTransport | None = None  # to abort a peer that does not take the close

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name=f"ws-writer-{self.id}")

    def send(self, frame: bytes, seq: int | None = None) -> bool:
        """Queue one encoded frame. Never blocks. False if the session is closed or was just closed as slow."""
        if self.closed:
            return False
        if self._held is not None and REPLAYING.get() is not self:
            if len(self._held) >= self._limit:
                self._close_slow()
                return False
            self._held.append((frame, seq))
            return True
        if seq is not None:
            if seq in self.sent_seqs:
                return True
            self.sent_seqs.add(seq)
            if len(self.sent_seqs) > 2 * SEQ_WINDOW:  # replay and live overlap only briefly after a resume
                self.sent_seqs = set(sorted(self.sent_seqs)[-SEQ_WINDOW:])
        if len(self._queue) >= self._limit:
            self._close_slow()
            return False
        self._queue.append(frame)
        self._wake.set()
        return True

    def hold(self) -> None:
        """Hold live frames back (while the resume replay goes out first)."""
        self._held = []

    def release(self) -> None:
        """Queue the held frames behind the replay; any the replay already sent are skipped by seq."""
        held, self._held = self._held or [], None
        for frame, seq in held:
            self.send(frame, seq)

    def send_json(self, message: dict[str, Any]) -> bool:
        return self.send(protocol.encode(message))

    def set_credentials(self, creds: Credentials) -> None:
        self.credentials = creds
        self.asked.clear()
        self.credentials_changed.set()
        self.credentials_changed = asyncio.Event()

    def ask_credentials(self, reason: str) -> None:
        """Send ``crm.credentials_required`` once per reason until the session answers."""
        if reason in self.asked:
            return
        self.asked.add(reason)
        if reason == "expired":
            self.credentials = None
        self.send_json({"type": "crm.credentials_required", "reason": reason})

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def _write_loop(self) -> None:
        ws = self.ws
        try:
            while not self.closed:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                frame = self._queue.popleft()
                await ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    def _close_slow(self) -> None:
        self.closed = True
        self._queue.clear()
        self._metrics.sessions_closed_slow.inc()
        log.warning("session.closed.slow", session=self.id, account=self.account_id, user=self.sipgate_user,
                    limit=self._limit)
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(self._close(protocol.CLOSE_SLOW_READER, b"too slow a reader"))

    async def _close(self, code: int, message: bytes) -> None:
        try:
            async with asyncio.timeout(10):
                await self.ws.close(code=code, message=message)
        except (TimeoutError, ConnectionError, RuntimeError):
            if self.transport is not None:
                self.transport.abort()

    async def close(self, code: int, message: bytes = b"") -> None:
        self.closed = True
        await cancel_and_wait(self._writer)
        if self._closer is not None:
            await self._closer
            return
        await self._close(code, message)

    async def flush(self, timeout: float = 2.0) -> None:
        """Give the writer a moment to send what is queued (used before a graceful close)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._queue and not self.closed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def stop_writer(self) -> None:
        self.closed = True
        await cancel_and_wait(self._writer)
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await self._closer


def _discard(index: dict[K, set[Session]], key: K, s: Session) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(s)
        if not group:
            del index[key]


@dataclass(frozen=True, slots=True)
class Revocation:
    """What a revocation closes: a user's sessions (those of one token, when ``token_hash`` is set), or an
    account's."""

    user_id: str | None = None
    token_hash: bytes | None = None
    account_id: str | None = None

    @property
    def code(self) -> int:
        return protocol.CLOSE_ACCOUNT_DELETED if self.account_id is not None else protocol.CLOSE_TOKEN_REVOKED

    @classmethod
    def of_sweep(cls, row: Any) -> Revocation:
        """A row of the ``sessions_revoked`` query: the user's token is gone, or the whole account is."""
        if row["account_gone"]:
            return cls(account_id=row["account_id"])
        return cls(user_id=row["user_id"], token_hash=bytes(row["token_hash"]))

    def matches(self, s: Session) -> bool:
        if self.account_id is not None:
            return s.account_id == self.account_id
        return s.user_id == self.user_id and (self.token_hash is None or s.token_hash == self.token_hash)


class Hub:
    """The sessions of this process, by (account, sipgate user) and by user id."""

    RECENT = 1000  # revocations remembered for sessions that were authenticating meanwhile

    def __init__(self, metrics: Metrics) -> None:
        self._by_user: dict[tuple[str, str], set[Session]] = {}
        self._by_uid: dict[str, set[Session]] = {}
        self._all: set[Session] = set()
        self._metrics = metrics
        self._epoch = 0  # counts revocations seen and sweeps begun
        #: by epoch: a revocation, or None where a sweep took its snapshot of the sessions
        self._recent: deque[tuple[int, Revocation | None]] = deque(maxlen=self.RECENT)
        self._closing: set[asyncio.Task[None]] = set()

    def mark(self) -> int:
        """Taken before a token is checked: ``add(session, since=mark)`` closes the session if a revocation of
        that token arrived while it was being checked."""
        return self._epoch

    def add(self, s: Session, since: int | None = None) -> bool:
        """True when a sweep took its snapshot while the session's token was being checked (the sweep did not
        see it), or when more revocations came meanwhile than the hub remembers: the caller checks the session
        the way a sweep would."""
        self._by_user.setdefault((s.account_id, s.sipgate_user), set()).add(s)
        self._by_uid.setdefault(s.user_id, set()).add(s)
        self._all.add(s)
        self._metrics.sessions.set(len(self._all))
        unswept = False
        if since is not None and since < self._epoch:
            for epoch, r in reversed(self._recent):
                if epoch <= since:
                    break
                if r is None:
                    unswept = True
                elif r.matches(s):
                    self._close_revoked(s, r.code)
                    return False
            else:
                # more revocations came than are remembered: what fell out is checked as a sweep would
                unswept = unswept or self._recent[0][0] > since + 1
        return unswept

    def remove(self, s: Session) -> None:
        _discard(self._by_user, (s.account_id, s.sipgate_user), s)
        _discard(self._by_uid, s.user_id, s)
        self._all.discard(s)
        self._metrics.sessions.set(len(self._all))

    def __len__(self) -> int:
        return len(self._all)

    def counts_by_user(self) -> dict[str, int]:
        """{user id: open sessions} of this process, for each user with one (closed sessions not yet removed do
        not count): what the presence writer reports. A new dict, the hub's index is not handed out."""
        counts = {uid: sum(1 for s in group if not s.closed) for uid, group in self._by_uid.items()}
        return {uid: n for uid, n in counts.items() if n}

    def sessions_for(self, account_id: str, users: Iterable[str],
                     recipients: Iterable[str] | None = None) -> list[Session]:
        """The open sessions an event is for. ``recipients``: the user ids the event was addressed to when it
        was stored, so a session of a user removed since (or of an earlier holder of the same sipgate id) gets
        nothing; without them (events stored before they existed) the sipgate user ids decide."""
        out: list[Session] = []
        if recipients is not None:
            for uid in recipients:
                out.extend(s for s in self._by_uid.get(uid, ()) if not s.closed and s.account_id == account_id)
            return out
        for u in users:
            out.extend(s for s in self._by_user.get((account_id, u), ()) if not s.closed)
        return out

    def publish(self, sessions: Iterable[Session], message: dict[str, Any]) -> int:
        """Encode once, queue for every session. Returns how many sessions took it."""
        frame = protocol.encode(message)
        seq = message.get("seq")
        n = 0
        for s in sessions:
            n += s.send(frame, seq)
        if n:
            self._metrics.pops.labels(message["type"]).inc(n)
        return n

    # -- revocation --------------------------------------------------------------------------------

    def revoke(self, r: Revocation) -> int:
        """Close the sessions a revocation names (4502, or 4503 for an account). Returns how many."""
        self._epoch += 1
        self._recent.append((self._epoch, r))
        if r.account_id is not None:
            targets = [s for s in self._all if r.matches(s)]
        else:
            targets = [s for s in self._by_uid.get(r.user_id or "", ()) if r.matches(s)]
        for s in targets:
            self._close_revoked(s, r.code)
        return len(targets)

    def sweep(self) -> list[tuple[str, bytes, str]]:
        """A sweep begins: (user id, token hash, account id) of every open session, once each, for it to check.
        A session whose token check began before this and that joins after is told to check itself (``add``)."""
        self._epoch += 1
        self._recent.append((self._epoch, None))
        return list({(s.user_id, s.token_hash, s.account_id) for s in self._all if not s.closed})

    def _close_revoked(self, s: Session, code: int) -> None:
        s.closed = True  # from now on nothing is queued for it
        self.remove(s)
        log.info("session.revoked", session=s.id, account=s.account_id, user=s.sipgate_user, code=code)
        reason = b"account deleted" if code == protocol.CLOSE_ACCOUNT_DELETED else b"token revoked"
        task = asyncio.create_task(s.close(code, reason), name=f"ws-revoke-{s.id}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close_all(self, code: int = protocol.CLOSE_GOING_AWAY) -> None:
        sessions = list(self._all)
        await asyncio.gather(*(s.flush(1.0) for s in sessions), return_exceptions=True)
        await asyncio.gather(*(s.close(code, b"server shutting down") for s in sessions), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)
