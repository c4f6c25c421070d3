"""The hub's side of revocation, without sockets: which sessions a revocation closes, with which code, and a
session whose token was revoked while it was being checked."""

from __future__ import annotations

import asyncio

from hejcti.metrics import Metrics
from hejcti.sessions import Hub, Revocation, Session


class FakeSocket:
    def __init__(self) -> None:
        self.codes: list[int] = []

    async def close(self, *, code: int, message: bytes) -> None:
        self.codes.append(code)


def session(user_id: str, token_hash: bytes, account_id: str = "acc_1", sipgate_user: str = "w0") -> Session:
    return Session(FakeSocket(), user_id=user_id, account_id=account_id, sipgate_user=sipgate_user,  # type: ignore[arg-type]
                   crm_user=None, limit=10, metrics=Metrics(), token_hash=token_hash)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_replaced_token_closes_that_tokens_sessions_only():
    hub = Hub(Metrics())
    old, new, other = session("usr_1", b"old"), session("usr_1", b"new"), session("usr_2", b"old")
    for s in (old, new, other):
        hub.add(s)
    assert hub.revoke(Revocation(user_id="usr_1", token_hash=b"old")) == 1
    await settle()
    assert old.closed and old.ws.codes == [4502]
    assert not new.closed and not other.closed and len(hub) == 2
    assert set(hub.sessions_for("acc_1", ["w0"])) == {new, other}


async def test_an_account_deletion_closes_its_sessions_with_4503():
    hub = Hub(Metrics())
    mine, theirs = session("usr_1", b"a", "acc_1"), session("usr_2", b"b", "acc_2")
    hub.add(mine)
    hub.add(theirs)
    assert hub.revoke(Revocation(account_id="acc_1")) == 1
    await settle()
    assert mine.ws.codes == [4503] and not theirs.closed


async def test_a_revocation_that_lands_while_the_token_is_checked_still_closes_the_session():
    hub = Hub(Metrics())
    since = hub.mark()  # the token check starts
    hub.revoke(Revocation(user_id="usr_1"))  # the user is removed; its notification comes before the session joins
    hub.revoke(Revocation(user_id="usr_9"))
    late = session("usr_1", b"t")
    hub.add(late, since)
    await settle()
    assert late.closed and late.ws.codes == [4502] and len(hub) == 0
    fresh = session("usr_1", b"t2")
    hub.add(fresh, hub.mark())  # checked after the revocation: its token is another one
    assert not fresh.closed


async def test_events_go_to_the_user_rows_they_were_stored_for():
    hub = Hub(Metrics())
    before, now = session("usr_old", b"a", sipgate_user="w1"), session("usr_new", b"b", sipgate_user="w1")
    hub.add(before)
    hub.add(now)
    assert hub.sessions_for("acc_1", ["w1"], ["usr_new"]) == [now]
    assert hub.sessions_for("acc_2", ["w1"], ["usr_new"]) == []  # a user id of another account: nothing
    assert set(hub.sessions_for("acc_1", ["w1"])) == {before, now}  # an event stored before recipients existed


async def test_a_session_that_joins_after_a_sweeps_snapshot_is_told_to_check_itself():
    hub = Hub(Metrics())
    since = hub.mark()  # its token check starts
    assert hub.sweep() == []  # the listener reconnected and checks the sessions it has: not this one yet
    assert hub.add(session("usr_1", b"t"), since) is True
    assert hub.add(session("usr_2", b"t"), hub.mark()) is False  # checked after the sweep began: nothing to do


async def test_more_revocations_during_a_check_than_are_remembered_make_the_session_check_itself():
    hub = Hub(Metrics())
    since = hub.mark()
    hub.revoke(Revocation(user_id="usr_other"))
    assert hub.add(session("usr_0", b"t"), since) is False  # all it missed is remembered: nothing to check
    for i in range(Hub.RECENT + 1):
        hub.revoke(Revocation(user_id=f"usr_other{i}"))
    assert hub.add(session("usr_1", b"t"), since) is True
    assert hub.add(session("usr_2", b"t"), hub.mark()) is False


async def test_counts_by_user_are_the_open_sessions_of_each_user():
    hub = Hub(Metrics())
    assert hub.counts_by_user() == {}
    a1, a2, b, gone = (session("usr_1", b"a"), session("usr_1", b"a2"), session("usr_2", b"b"),
                       session("usr_3", b"c"))
    for s in (a1, a2, b, gone):
        hub.add(s)
    assert hub.counts_by_user() == {"usr_1": 2, "usr_2": 1, "usr_3": 1}
    await a2.close(4001)  # closed (as a slow reader is), not yet removed from the hub
    hub.remove(gone)
    assert a2.closed and len(hub) == 3
    counts = hub.counts_by_user()
    assert counts == {"usr_1": 1, "usr_2": 1}
    counts["usr_1"] = 99  # a copy: the caller cannot change the hub
    assert hub.counts_by_user() == {"usr_1": 1, "usr_2": 1}
