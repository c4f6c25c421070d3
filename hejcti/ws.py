"""``GET /ws``: extension sessions (CONTRACT §5). Authenticate first, then a read loop; each message type
has its model in ``protocol``; a bad message gets an ``error`` reply and the session stays open."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, WSMsgType, web

from hejcti import connections, logs, protocol, tokens
from hejcti.config import Settings
from hejcti.crm.base import Credentials
from hejcti.errors import DatabaseUnavailableError
from hejcti.metrics import Metrics
from hejcti.sessions import Hub, Revocation, Session
from hejcti.store import Store

if TYPE_CHECKING:
    from hejcti.actions import Actions

log = logs.get("hejcti.ws")

#: replays what a resuming session missed (wired by the app factory to the workers' fan-out)
Replay = Callable[[Session, int], Awaitable[None]]
#: stores a call note for the call record (wired by the app factory): True stored, False no such call for
#: this user, a string: why the note will never be written (answered as ``not_logged``)
NoteSink = Callable[[Session, str, str], Awaitable[bool | str]]


class WebSocketHandler:
    def __init__(self, *, settings: Settings, store: Store, hub: Hub, metrics: Metrics,
                 replay: Replay | None = None, note: NoteSink | None = None) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.replay = replay
        self.note = note
        self.on_credentials: Callable[[Session], None] | None = None  # e.g. call records waiting for a token
        self.actions: Actions | None = None  # the sipgate actions (CONTRACT §5.1), wired by the app factory
        self.shutting_down = False

    async def __call__(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, heartbeat=30.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        connections.authenticating(request, True)  # until it has: dropped first past the connection cap
        if self.shutting_down:
            await ws.close(code=protocol.CLOSE_GOING_AWAY, message=b"server shutting down")
            return ws
        authenticated = await self._authenticate(ws, request)
        if authenticated is None:
            return ws
        connections.authenticating(request, False)
        session, resume, since = authenticated
        # from joining the hub to the end: whatever fails, the session leaves the hub
        try:
            session.start()
            await self._join(session, resume, since)
            await self._read_loop(ws, session)
        except Exception:
            log.exception("session.failed", session=session.id, account=session.account_id,
                          user=session.sipgate_user)
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
        finally:
            self.hub.remove(session)
            if self.actions is not None:
                await self.actions.close(session)
            await session.stop_writer()
            log.info("session.closed", session=session.id, account=session.account_id, user=session.sipgate_user,
                     code=ws.close_code)
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse,
                            request: web.Request) -> tuple[Session, int | None, int] | None:
        """The first message: a session (not yet in the hub), the seq it resumes after and the hub's mark from
        before its token was checked; or None (closed)."""
        try:
            msg = await ws.receive(timeout=self.settings.auth_timeout_s)
        except TimeoutError:
            await ws.close(code=protocol.CLOSE_AUTH_PROTOCOL, message=b"no auth within the time limit")
            return None
        if msg.type != WSMsgType.TEXT:
            if msg.type not in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                await ws.close(code=protocol.CLOSE_AUTH_PROTOCOL, message=b"auth first")
            return None
        try:
            auth = protocol.parse(msg.data)
        except protocol.BadMessage as e:
            if e.bad_token:  # empty, too long, not a string: no such token
                return await self._reject(ws)
            # not an auth message, or one whose other fields are malformed (a resume that is no seq): a protocol
            # error, 4501; the token may well be valid, so not auth_invalid
            await ws.close(code=protocol.CLOSE_AUTH_PROTOCOL, message=str(e).encode("ascii", "replace")[:120])
            return None
        if not isinstance(auth, protocol.Auth):
            await ws.close(code=protocol.CLOSE_AUTH_PROTOCOL, message=b"auth first")
            return None
        since = self.hub.mark()  # a revocation heard while the token is checked still reaches the session
        try:
            row = await tokens.user_for_token(self.store, auth.token)
        except DatabaseUnavailableError:
            await ws.close(code=protocol.CLOSE_UNAVAILABLE, message=b"try again")
            return None
        if row is None:
            return await self._reject(ws)
        session = Session(ws, user_id=row["id"], account_id=row["account_id"], sipgate_user=row["sipgate_user"],
                          crm_user=row["crm_user"], limit=self.settings.session_queue_limit, metrics=self.metrics,
                          token_hash=bytes(row["token_hash"]))
        session.transport = request.transport
        session.send_json(protocol.reply("auth_ok", auth.id, user_id=session.user_id,
                                         account_id=session.account_id, session_id=session.id))
        return session, auth.resume, since

    async def _join(self, session: Session, resume: int | None, since: int) -> None:
        """Into the hub (live events from here on), after the replay of what a resuming session missed."""
        # not started yet: it runs below, once the session is in the hub
        replay = self.replay(session, resume) if self.replay is not None and resume is not None else None
        if replay is not None:
            session.hold()  # live events wait until the replay is out: what was missed comes first
        unswept = self.hub.add(session, since)  # live events from here on; the replay below skips what overlaps
        log.info("session.opened", session=session.id, account=session.account_id, user=session.sipgate_user,
                 resume=resume)
        if unswept:
            await self._sweep(session)
        if replay is not None:
            try:
                await replay
            except DatabaseUnavailableError:
                log.warning("session.resume.failed", session=session.id)
            finally:
                session.release()

    async def _sweep(self, session: Session) -> None:
        """What the listener's sweep does, for a session it missed (its token was being checked meanwhile)."""
        try:
            rows = await self.store.fetch("sessions_revoked", [session.user_id], [session.token_hash],
                                          [session.account_id])
        except DatabaseUnavailableError:
            await session.close(protocol.CLOSE_UNAVAILABLE, b"try again")
            return
        for row in rows:
            self.hub.revoke(Revocation.of_sweep(row))

    @staticmethod
    async def _reject(ws: web.WebSocketResponse) -> None:
        await ws.send_str('{"type":"auth_invalid"}')
        await ws.close(code=protocol.CLOSE_AUTH_INVALID, message=b"invalid token")
        log.info("session.auth_invalid")
        return None

    async def _read_loop(self, ws: web.WebSocketResponse, session: Session) -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await self._on_message(session, msg.data)
            elif msg.type == WSMsgType.BINARY:
                session.send_json(protocol.reply("error", None, code="bad_message",
                                                 message="binary frames are not part of the protocol"))
            elif msg.type == WSMsgType.ERROR:
                break

    async def _on_message(self, session: Session, text: str) -> None:
        try:
            m = protocol.parse(text)
        except protocol.BadMessage as e:
            session.send_json(protocol.reply("error", e.msg_id, code=e.code, message=str(e)))
            return
        reply: dict[str, Any]
        if isinstance(m, protocol.SIPGATE_ACTIONS):
            if self.actions is not None:
                self.actions.submit(session, m)  # a task of its own: a slow sipgate holds up no other message
                return
            reply = protocol.reply("error", m.id, code="unavailable", message="sipgate actions are not enabled")
        elif isinstance(m, protocol.Ping):
            reply = protocol.reply("pong", m.id)
        elif isinstance(m, protocol.CrmCredentials):
            session.set_credentials(Credentials(access_token=m.access_token, instance_url=m.instance_url))
            log.info("session.credentials", session=session.id, account=session.account_id)
            if self.on_credentials is not None:
                self.on_credentials(session)
            reply = protocol.reply("result", m.id, ok=True)
        elif isinstance(m, protocol.CallNote):
            if self.note is None:
                reply = protocol.reply("error", m.id, code="unavailable", message="call notes are not enabled")
            else:
                try:
                    ok = await self.note(session, m.call_id, m.text)
                except DatabaseUnavailableError:
                    reply = protocol.reply("error", m.id, code="unavailable", message="database unavailable")
                except protocol.NoteTooLongError as e:
                    reply = protocol.reply("error", m.id, code="note_too_long", message=str(e))
                else:
                    if isinstance(ok, str):  # the note will never be written: say why (logging off, job failed)
                        reply = protocol.reply("error", m.id, code="not_logged", message=ok)
                    elif ok:
                        reply = protocol.reply("result", m.id, ok=True)
                    else:
                        reply = protocol.reply("error", m.id, code="not_found", message="no such call for this user")
        else:  # Auth again
            reply = protocol.reply("error", m.id, code="bad_message", message="already authenticated")
        session.send_json(reply)


async def close_sessions(hub: Hub, handler: WebSocketHandler) -> None:
    handler.shutting_down = True
    await hub.close_all(protocol.CLOSE_GOING_AWAY)
    await asyncio.sleep(0)
