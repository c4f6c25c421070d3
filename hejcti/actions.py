"""The sipgate actions of an extension session (CONTRACT §5.1): ``me``, ``directory.search``, ``call.dial``,
``call.transfer`` and ``call.hangup``.

They run in the session's own message handling, never on the webhook path or in the fan-out. Each runs as a
task of its own, so that a slow sipgate never holds up the session's other messages (a ``ping`` is answered
at once), and has ``sipgate_timeout_s`` (5 s) in all, however many requests and retries it makes; at most
``concurrency`` of a session's actions talk to sipgate at a time, and a session with ``backlog`` actions
unanswered gets ``busy`` for a further one at once. A session's actions are cancelled when it ends.

Live user data (names, emails, numbers) comes through ``SipgateAccounts.users``: at most 60 s old, one
``/users`` and one ``/numbers`` fetch per account however many sessions ask at once, memory only; a user's
devices only for ``me`` and ``call.dial``, that user's alone. Who is on the phone comes from
the ``calls`` table, which every process writes, in one query per search. Whose a call is, for transfer and
hangup, comes from there too.

Errors (each reply carries the client's ``id``): ``sipgate_not_connected``, ``sipgate_refused`` (with sipgate's
``status`` and ``message``), ``sipgate_unavailable``; ``not_your_call`` for a call the user may not control;
``bad_message`` for a request this user cannot make as asked: a device that is not theirs, a colleague the
account does not have, a number that is not one. The last is ``bad_message`` and not a code of its own because
the request names something that is not there for this user, just as a malformed field does: the extension has
nothing else to do but say so, and the message says what. Besides 5.1's codes: ``busy`` (past the backlog),
``not_found`` (the session's user is not in the connected sipgate account's listing, or the account was deleted
meanwhile: found here, so not ``sipgate_refused``, which is sipgate's own refusal), ``unavailable`` (the
database) and ``internal_error`` (a fault here, logged with its traceback).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hejcti import colleagues, logs, phones, protocol
from hejcti.config import Settings
from hejcti.errors import DatabaseUnavailableError, HejctiError, NotFoundError
from hejcti.sessions import Session
from hejcti.sipgate import SipgateError
from hejcti.sipgate_live import LiveUser, SipgateAccounts
from hejcti.store import Store
from hejcti.tasks import cancel_and_wait

log = logs.get("hejcti.actions")

Action = protocol.Me | protocol.DirectorySearch | protocol.CallDial | protocol.CallTransfer | protocol.CallHangup


class ActionError(HejctiError):
    """An action refused before sipgate is asked: the ``error`` reply's code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Slot:
    """A session's running actions."""

    gate: asyncio.Semaphore
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Actions:
    def __init__(self, *, sipgate: SipgateAccounts, store: Store, settings: Settings, concurrency: int = 2,
                 backlog: int = 8) -> None:
        self.sipgate = sipgate
        self.store = store
        self.settings = settings
        self.concurrency = concurrency
        self.backlog = backlog
        self._slots: dict[str, _Slot] = {}

    # -- running them -----------------------------------------------------------------------------------

    def submit(self, session: Session, m: Action) -> None:
        """Start the action; its reply goes to the session when it is done. Never blocks."""
        slot = self._slots.get(session.id)
        if slot is None:
            slot = self._slots[session.id] = _Slot(asyncio.Semaphore(self.concurrency))
        if len(slot.tasks) >= self.backlog:
            log.info("sipgate.action.busy", session=session.id, account=session.account_id, kind=m.type)
            session.send_json(protocol.reply("error", m.id, code="busy",
                                             message=f"{len(slot.tasks)} sipgate actions of this session are "
                                                     "still running; wait for their replies"))
            return
        task = asyncio.create_task(self._run(session, m, slot.gate), name=f"action-{m.type}-{session.id}")
        slot.tasks.add(task)
        task.add_done_callback(slot.tasks.discard)

    async def close(self, session: Session) -> None:
        """The session ended: its running actions are cancelled (their replies would go nowhere)."""
        slot = self._slots.pop(session.id, None)
        for task in list(slot.tasks) if slot else ():
            await cancel_and_wait(task)

    async def _run(self, session: Session, m: Action, gate: asyncio.Semaphore) -> None:
        async with gate:
            reply = await self.answer(session, m)
        session.send_json(reply)

    async def answer(self, session: Session, m: Action) -> dict[str, Any]:
        """The reply to one action: its result, or an ``error`` with the client's id. The whole action, however
        many requests it makes, has ``sipgate_timeout_s`` (CONTRACT §5.1: timeouts are sipgate_unavailable)."""
        limit = self.settings.sipgate_timeout_s
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await self._dispatch(session, m)
        except TimeoutError:
            if deadline.expired():
                out = {"type": "error", "code": "sipgate_unavailable",
                       "message": f"sipgate did not answer within {limit:g} s"}
            else:
                log.exception("sipgate.action.crashed", session=session.id, account=session.account_id, kind=m.type)
                out = {"type": "error", "code": "internal_error", "message": "the server failed; try again"}
        except ActionError as e:
            out = {"type": "error", "code": e.code, "message": str(e)}
        except SipgateError as e:
            out = e.reply()
            out.setdefault("message", str(e))
        except NotFoundError as e:  # the account was deleted while the action ran
            out = {"type": "error", "code": "not_found", "message": str(e)}
        except DatabaseUnavailableError:
            out = {"type": "error", "code": "unavailable", "message": "database unavailable"}
        except Exception:
            log.exception("sipgate.action.crashed", session=session.id, account=session.account_id, kind=m.type)
            out = {"type": "error", "code": "internal_error", "message": "the server failed; try again"}
        log.info("sipgate.action.failed", session=session.id, account=session.account_id, kind=m.type,
                 code=out["code"], status=out.get("status"))
        return protocol.reply(out.pop("type"), m.id, **out)

    async def _dispatch(self, session: Session, m: Action) -> dict[str, Any]:
        if isinstance(m, protocol.Me):
            return await self.me(session, m)
        if isinstance(m, protocol.DirectorySearch):
            return await self.search(session, m)
        if isinstance(m, protocol.CallDial):
            return await self.dial(session, m)
        if isinstance(m, protocol.CallTransfer):
            return await self.transfer(session, m)
        return await self.hangup(session, m)

    # -- the actions ---------------------------------------------------------------------------------------

    async def me(self, session: Session, m: protocol.Me) -> dict[str, Any]:
        user = await self._own(session)
        devices = await self.sipgate.devices(session.account_id, user.id)
        return protocol.reply("me", m.id, user={
            "id": user.id, "name": user.user.name or None, "email": user.user.email, "admin": user.user.admin,
            "numbers": user.e164s,
            "devices": [{"id": d.id, "alias": d.alias, "type": d.type, "online": d.online} for d in devices],
        }, crm_user=session.crm_user)

    async def search(self, session: Session, m: protocol.DirectorySearch) -> dict[str, Any]:
        users = await self.sipgate.users(session.account_id)
        found = colleagues.search(users, m.q, await self._region(session), m.limit)
        busy = {r["sipgate_user"]: r["in_call"] for r in await self.store.fetch(
            "presence", session.account_id, self.settings.ring_timeout_s, self.settings.talk_timeout_s)}
        presence = {True: "in_call", False: "ringing", None: "available"}
        return protocol.reply("directory.result", m.id, q=m.q, users=[
            colleagues.entry(u, presence[busy.get(u.id)]) for u in found])

    async def dial(self, session: Session, m: protocol.CallDial) -> dict[str, Any]:
        me = await self._own(session)
        callee = await self._target(session, m.to)
        client = await self.sipgate.client(session.account_id)
        devices = await client.devices(session.sipgate_user)  # asked now: is the phone online at this moment?
        mine = {d.id: d for d in devices}
        device = m.device or me.user.default_device or next(iter(mine), None)
        if device is None:
            raise ActionError("bad_message", "you have no sipgate device to call from")
        if device not in mine and device != me.user.default_device:  # sipgate Neo lists no devices: trust the default
            raise ActionError("bad_message", f"device: {device!r} is not one of your devices "
                                             f"({', '.join(sorted(mine)) or 'none listed'})")
        online = mine[device].online if device in mine else None
        call = await client.dial(device, callee)
        log.info("sipgate.dialled", session=session.id, account=session.account_id, device=device, online=online,
                 callee=callee, call_id=call)
        return protocol.reply("result", m.id, ok=True, session_id=call, device={"id": device, "online": online})

    async def transfer(self, session: Session, m: protocol.CallTransfer) -> dict[str, Any]:
        call = await self._call(session, m.call_id)
        me = session.sipgate_user
        if not call["answered"] and me in call["users"]:
            raise ActionError("not_your_call", f"call {m.call_id} is still ringing: sipgate transfers only "
                                               "established calls (REST call control); answer it first")
        if not _in_call(call, me):
            raise ActionError("not_your_call", f"call {m.call_id} is not a call you answered")
        number = await self._target(session, m.to)
        client = await self.sipgate.client(session.account_id)
        await client.transfer(m.call_id, number, attended=m.attended)
        log.info("sipgate.transferred", session=session.id, account=session.account_id, call_id=m.call_id,
                 to=number, attended=m.attended)
        return protocol.reply("result", m.id, ok=True)

    async def hangup(self, session: Session, m: protocol.CallHangup) -> dict[str, Any]:
        call = await self._call(session, m.call_id)
        me = session.sipgate_user
        ringing_for_me = not call["answered"] and me in call["users"]  # an outgoing leg still ringing: mine too
        if not (ringing_for_me or _in_call(call, me)):
            raise ActionError("not_your_call", f"call {m.call_id} neither rings for you nor was answered by you")
        client = await self.sipgate.client(session.account_id)
        await client.hangup(m.call_id)
        log.info("sipgate.hung_up", session=session.id, account=session.account_id, call_id=m.call_id)
        return protocol.reply("result", m.id, ok=True)

    # -- helpers ----------------------------------------------------------------------------------------------

    async def _own(self, session: Session) -> LiveUser:
        users = await self.sipgate.users(session.account_id)
        me = colleagues.find(users, session.sipgate_user)
        if me is None:  # removed in sipgate since the token was issued: found here, not sipgate's refusal
            raise ActionError("not_found", f"the session's user {session.sipgate_user} is not a user of the "
                                           "connected sipgate account")
        return me

    async def _region(self, session: Session) -> str:
        row = await self.store.fetchrow("account_settings", session.account_id)
        if row is None:
            raise NotFoundError("the account was deleted")
        return str(row["region"])

    async def _target(self, session: Session, to: str | protocol.Colleague) -> str:
        """What to call or transfer to: a number read in the account's region (E.164 with ``+``), an extension of
        the account as typed, or a colleague's first number (their extension when they have none)."""
        if isinstance(to, str):
            number = phones.normalize(to, await self._region(session))
            if number is not None:
                return number
            extension = to.strip()
            if extension.isascii() and extension.isdigit() and any(
                    u.extension == extension for u in await self.sipgate.users(session.account_id)):
                return extension
            raise ActionError("bad_message", "to: not a phone number")
        colleague = colleagues.find(await self.sipgate.users(session.account_id), to.user)
        if colleague is None:
            raise ActionError("bad_message", f"to.user: no sipgate user {to.user!r} in this account")
        target = next(iter(colleague.e164s), None) or colleague.extension
        if target is None:
            raise ActionError("bad_message", f"to.user: {to.user} has neither a number nor an extension")
        return target

    async def _call(self, session: Session, call_id: str) -> Any:
        call = await self.store.fetchrow("call_state", session.account_id, call_id)
        if call is None:
            raise ActionError("not_your_call", f"no call {call_id} in this account")
        if call["ended"]:
            raise ActionError("not_your_call", f"call {call_id} has ended")
        return call


def _in_call(call: Any, me: str) -> bool:
    """The user talks in this call: they answered it, or it is an outgoing leg they placed that was answered
    (sipgate's answer of an outgoing call names nobody)."""
    if not call["answered"]:
        return False
    return me in call["users"] if call["direction"] == "out" else call["answered_by"] == me
