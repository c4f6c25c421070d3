"""Call-record jobs against a real PostgreSQL and a fake adapter: notes written once, jobs isolated from each
other, a written record never written again, forwarded legs that never get a next leg, two legs hanging up
at once, and notes that will never be written answered as such."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from hejcti import tokens
from hejcti.crm.base import (
    CallRecord,
    Credentials,
    CrmAdapter,
    CrmPermanentError,
    CrmTransientError,
    LoggedRecord,
)
from hejcti.errors import DatabaseUnavailableError
from hejcti.lookup import Account
from hejcti.metrics import Metrics
from hejcti.store import q
from tests.db import insert_account
from workers.records import Records

CREDS = Credentials("tok")
_seq = itertools.count()


# ------------------------------------------------------------------------------------------ doubles


class FakeSession:
    def __init__(self, account_id: str, user: str) -> None:
        self.account_id = account_id
        self.sipgate_user = user
        self.user_id = f"{account_id}.{user}"  # as seed() names the user rows
        self.credentials: Credentials | None = CREDS
        self.closed = False
        self.asked: list[str] = []

    def ask_credentials(self, reason: str) -> None:
        self.asked.append(reason)


class FakeHub:
    def __init__(self, *sessions: FakeSession) -> None:
        self._all = set(sessions)
        self.published: list[dict[str, Any]] = []

    def sessions_for(self, account_id: str, users: Any, recipients: Any = None) -> list[FakeSession]:
        """As the real hub: by user row where the call kept them, else by sipgate id."""
        if recipients is not None:
            return [s for s in self._all if s.account_id == account_id and s.user_id in set(recipients)]
        users = set(users)
        return [s for s in self._all if s.account_id == account_id and s.sipgate_user in users]

    def publish(self, sessions: Any, message: dict[str, Any]) -> int:
        self.published.append(message)
        return len(list(sessions))


class FakeAccounts:
    def __init__(self, broken: set[str] | None = None) -> None:
        self.broken = broken or set()

    async def get(self, account_id: str) -> Account:
        if account_id in self.broken:
            raise DatabaseUnavailableError("ConnectionDoesNotExistError")
        return Account(id=account_id, crm_kind="fake", crm_instance=None, region="DE", log_calls=True)

    async def crm_users(self, account_id: str) -> dict[str, str | None]:
        return {}


class FakeCrm(CrmAdapter):
    """Keeps records as the CRMs do: a body that notes are appended to."""

    kind = "fake"

    def __init__(self) -> None:
        super().__init__(instance="https://crm.example", region="DE", http=None)
        self.bodies: dict[str, str] = {}
        self.created: list[CallRecord] = []
        self.appended: list[str] = []
        self.explode: set[str] = set()  # record keys whose write raises a bug
        self.hang: set[str] = set()  # record keys whose write never answers
        self.gate: asyncio.Event | None = None  # set: the write waits for it
        self.entered = asyncio.Event()
        self.lose: set[str] = set()  # record keys whose write is stored but its answer lost, once
        self.finds: list[str] = []  # the keys find_logged was asked for
        self.refuse_find = False  # find_logged answers as a CRM that will not run the query

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list:
        return []

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        self.entered.set()
        if record.key in self.explode:
            raise RuntimeError("a bug in one job")
        if record.key in self.hang:
            await asyncio.Event().wait()
        if self.gate is not None:
            await self.gate.wait()
        rid = f"R{len(self.created) + 1}"
        self.created.append(record)
        self.bodies[rid] = record.description("DE")
        if record.key in self.lose:
            self.lose.discard(record.key)
            raise CrmTransientError("cannot reach fake: ServerDisconnectedError", crm=self.kind)
        return LoggedRecord(rid, f"https://crm.example/{rid}")

    async def find_logged(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord | None:
        self.finds.append(record.key)
        if self.refuse_find:
            raise CrmPermanentError("HTTP 400 from fake (INVALID_FIELD)", crm=self.kind, status=400)
        rid = next((f"R{i + 1}" for i, c in enumerate(self.created) if c.key == record.key), None)
        return None if rid is None else LoggedRecord(rid, f"https://crm.example/{rid}", body=self.bodies[rid])

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        self.appended.append(text)
        self.bodies[record_id] += f"\n\n{text}"


class FakeLookups:
    def __init__(self, adapter: CrmAdapter) -> None:
        self._adapter = adapter

    def adapter(self, account: Account) -> CrmAdapter:
        return self._adapter

    def cached(self, account_id: str, number: str) -> None:
        return None


# ------------------------------------------------------------------------------------------- set-up


async def seed(pool: asyncpg.Pool, account_id: str = "acc_a", *, log_calls: bool = True,
               crm: str = "hubspot") -> None:
    await insert_account(pool, account_id, crm=crm, log_calls=log_calls)
    for u in ("w0", "w1"):
        await pool.execute("INSERT INTO users (id, account_id, sipgate_user, token_hash) VALUES ($1, $2, $3, $4)",
                           f"{account_id}.{u}", account_id, u, tokens.digest(f"{account_id}{u}"))


async def ingest(conn: Any, event: str, call_id: str, account_id: str = "acc_a", **data: Any) -> Any:
    return await conn.fetchval("SELECT hejcti_ingest($1, $2, $3, $4, $5::jsonb)", account_id, event, call_id,
                               f"d{next(_seq)}", data)


async def ring(conn: Any, call_id: str, account_id: str = "acc_a", xcid: str | None = None) -> None:
    await ingest(conn, "newCall", call_id, account_id, direction="in", number="+493012345678",
                 own_number="+492111234567", xcid=xcid, user_ids=["w0"])


async def hang_up(conn: Any, call_id: str, account_id: str = "acc_a", cause: str = "cancel",
                  xcid: str | None = None) -> None:
    await ingest(conn, "hangup", call_id, account_id, cause=cause, xcid=xcid)


async def make_ready(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE call_records SET run_after = now() WHERE state = 'ready'")


async def ended_calls(pool: asyncpg.Pool, *call_ids: str, account_id: str = "acc_a") -> None:
    """Calls that rang and hung up, their record jobs due now."""
    for cid in call_ids:
        await ring(pool, cid, account_id)
        await hang_up(pool, cid, account_id)
    await make_ready(pool)


def records(pool: Any, crm: FakeCrm, *, accounts: FakeAccounts | None = None, **kw: Any) -> Records:
    hub = FakeHub(FakeSession("acc_a", "w0"), FakeSession("acc_b", "w0"))
    return Records(pool=pool, hub=hub, accounts=accounts or FakeAccounts(), lookups=FakeLookups(crm),  # type: ignore[arg-type]
                   metrics=Metrics(), **kw)


async def job(pool: asyncpg.Pool, account_id: str = "acc_a") -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM call_records WHERE account_id = $1", account_id)


async def note(r: Records, call_id: str, text: str, account_id: str = "acc_a") -> Any:
    return await r.add_note(FakeSession(account_id, "w0"), call_id, text)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ G1: notes once


async def test_each_note_is_written_once(pool):
    await seed(pool)
    crm = FakeCrm()
    r = records(pool, crm)
    await ring(pool, "C1")
    assert await note(r, "C1", "EARLY") is True
    await hang_up(pool, "C1")
    await make_ready(pool)
    assert await r.once() == 1
    (rid,) = crm.bodies
    assert crm.bodies[rid].endswith("\n\nEARLY")
    for text in ("LATE1", "LATE2"):
        assert await note(r, "C1", text) is True
        assert await r.once() == 1
    assert crm.appended == ["LATE1", "LATE2"]
    body = crm.bodies[rid]
    assert body.count("EARLY") == 1 and body.count("LATE1") == 1
    assert body.endswith("\n\nEARLY\n\nLATE1\n\nLATE2")
    row = await job(pool)
    assert row["note_pending"] is False and row["note"] is None  # all in the CRM: nothing of it kept here
    assert row["note_sent"] == len("EARLY") + len("LATE1") + len("LATE2")
    assert await r.once() == 0


async def test_a_note_during_the_write_is_appended_alone(pool):
    await seed(pool)
    crm = FakeCrm()
    r = records(pool, crm)
    await ring(pool, "C2")
    await note(r, "C2", "EARLY")
    await hang_up(pool, "C2")
    await make_ready(pool)
    crm.gate = asyncio.Event()
    round_ = asyncio.create_task(r.once())
    await crm.entered.wait()  # the record is being written with "EARLY" in it
    assert await note(r, "C2", "MID") is True
    crm.gate.set()
    assert await round_ == 1
    row = await job(pool)
    assert row["state"] == "done" and row["note_pending"] is True
    assert await r.once() == 1
    assert crm.appended == ["MID"]
    row = await job(pool)
    assert row["note"] is None and row["note_sent"] == len("EARLY\nMID")
    assert list(crm.bodies.values())[0].count("EARLY") == 1


# ------------------------------------------------------------------------------ G2: jobs are isolated


async def test_a_failing_job_does_not_stop_the_others(pool):
    await seed(pool, "acc_a")
    await seed(pool, "acc_b")
    crm = FakeCrm()
    await ended_calls(pool, "BAD", "OK1")
    await ended_calls(pool, "OTHER", account_id="acc_b")
    crm.explode.add("BAD")
    r = records(pool, crm, accounts=FakeAccounts(broken={"acc_b"}))
    with capture_logs() as logs:
        assert await r.once() == 3  # neither the bug nor the outage escapes the round
    assert [c.call_id for c in crm.created] == ["OK1"]
    states = {row["record_key"]: row for row in await pool.fetch("SELECT * FROM call_records")}
    assert states["OK1"]["state"] == "done"
    for key, error in (("BAD", "RuntimeError"), ("OTHER", "DatabaseUnavailableError")):
        row = states[key]
        assert row["state"] == "ready" and row["lease_until"] is None and row["last_error"] == error
        assert await pool.fetchval("SELECT run_after > now() + interval '3 seconds' FROM call_records "
                                   "WHERE record_key = $1", key)  # backoff, not at once
    failed = [e for e in logs if e["event"] == "record.failed"]
    assert sorted(e["error"] for e in failed) == ["DatabaseUnavailableError", "RuntimeError"]
    assert all("tok" not in str(e) for e in logs)


async def test_a_hanging_crm_holds_only_its_own_job(pool):
    await seed(pool)
    crm = FakeCrm()
    await ended_calls(pool, "HANG", "OK2")
    crm.hang.add("HANG")
    r = records(pool, crm)
    r._crm_timeout = 0.5  # noqa: SLF001  # (crm_timeout_s=0.5; set so that the test runs on older code too)
    assert await asyncio.wait_for(r.once(), 5) == 2
    await r.drain(5)
    assert [c.call_id for c in crm.created] == ["OK2"]
    row = await pool.fetchrow("SELECT * FROM call_records WHERE record_key = 'HANG'")
    assert row["state"] == "ready" and row["lease_until"] is None and "longer than" in row["last_error"]


# ------------------------------------------------------------ G3a: the done update after a CRM write


class FlakyPool:
    """The pool, but the update that marks a job done fails ``fail`` times (the database went away)."""

    def __init__(self, pool: asyncpg.Pool, fail: int) -> None:
        self._pool = pool
        self.fail = fail

    async def execute(self, query: str, *args: Any) -> str:
        if query == q("record_done") and self.fail > 0:
            self.fail -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        return await self._pool.execute(query, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def test_done_update_is_retried_not_the_write(pool):
    await seed(pool)
    crm = FakeCrm()
    await ended_calls(pool, "C3")
    r = records(FlakyPool(pool, fail=2), crm)
    assert await r.once() == 1
    assert len(crm.created) == 1
    assert (await job(pool))["state"] == "done"
    assert r._hub.published[0]["record_id"] == "R1"  # noqa: SLF001


async def test_orphaned_record_is_logged_and_not_written_again(pool):
    await seed(pool)
    crm = FakeCrm()
    await ended_calls(pool, "C4")
    flaky = FlakyPool(pool, fail=100)
    r = records(flaky, crm)
    r._done_pause = 0.01  # noqa: SLF001  # (done_pause_s=0.01)
    with capture_logs() as logs:
        await r.once()
    (orphan,) = [e for e in logs if e["event"] == "record.orphaned"]
    assert orphan["crm_record"] == "R1"
    assert (await job(pool))["state"] == "ready"
    # the lease runs out and this process claims the job again, the database being back: done, not rewritten
    flaky.fail = 0
    await pool.execute("UPDATE call_records SET lease_until = NULL, run_after = now()")
    assert await r.once() == 1
    assert len(crm.created) == 1
    row = await job(pool)
    assert row["state"] == "done" and row["crm_record_id"] == "R1"


async def test_a_record_whose_answer_was_lost_is_found_not_written_again(pool):
    await seed(pool)
    crm = FakeCrm()
    crm.lose.add("LOST")
    r = records(pool, crm)
    await ring(pool, "LOST")
    assert await note(r, "LOST", "first") is True
    await hang_up(pool, "LOST")
    await make_ready(pool)
    assert await r.once() == 1  # written, the answer lost: retried later
    assert len(crm.created) == 1 and crm.finds == []  # a first attempt does not ask
    assert (await job(pool))["state"] == "ready"
    assert await note(r, "LOST", "second") is True  # meanwhile
    await pool.execute("UPDATE call_records SET run_after = now()")
    with capture_logs() as logs:
        assert await r.once() == 1
    assert crm.finds == ["LOST"] and len(crm.created) == 1  # found, not written again
    (found,) = [e for e in logs if e["event"] == "call.record.found"]
    assert found["crm_record"] == "R1" and not [e for e in logs if e["event"] == "call.record.written"]
    row = await job(pool)
    assert row["state"] == "done" and row["crm_record_id"] == "R1" and row["note_pending"] is True
    assert r._hub.published[-1]["record_id"] == "R1"  # noqa: SLF001  # the pop learns where it went
    assert await r.once() == 1  # only what the found record lacks is appended
    assert crm.appended == ["second"]
    assert crm.bodies["R1"].endswith("\n\nfirst\n\nsecond") and crm.bodies["R1"].count("first") == 1


async def test_a_crm_that_refuses_the_search_still_gets_the_record(pool):
    await seed(pool)
    crm = FakeCrm()
    crm.lose.add("NOFIND")
    crm.refuse_find = True
    r = records(pool, crm)
    await ended_calls(pool, "NOFIND")
    assert await r.once() == 1
    await pool.execute("UPDATE call_records SET run_after = now()")
    with capture_logs() as logs:
        assert await r.once() == 1
    assert crm.finds == ["NOFIND"] and len(crm.created) == 2  # written as without the search: never lost
    assert [e["event"] for e in logs if e["event"].startswith("call.record.")] == ["call.record.find_failed",
                                                                                    "call.record.written"]
    assert (await job(pool))["state"] == "done"


@pytest.mark.parametrize("crm_kind", ["fake", "hubspot"])
async def test_a_retry_is_built_from_the_first_creates_contact_and_owner(pool, crm_kind):
    """An earlier attempt fixed the contact and owner its create was built from (``first_create``, ids only):
    this attempt's create has exactly those, whatever the lookup and the mapping say now; unless they were
    for another CRM (the account changed CRM meanwhile), where the record is built afresh and fixed anew."""
    await seed(pool)
    crm = FakeCrm()
    r = records(pool, crm)
    await ended_calls(pool, "KEPT")
    kept = {"crm": crm_kind, "contact": {"crm": crm_kind, "kind": "contact", "id": "C9", "parent_id": "A7"},
            "owner": "U5"}
    await pool.execute("UPDATE call_records SET data = data || jsonb_build_object('first_create', $1::jsonb),"
                       " note_head = 0", kept)
    assert await r.once() == 1
    (made,) = crm.created
    row = await job(pool)
    if crm_kind == "fake":
        assert made.contact is not None and made.owner == "U5"
        assert (made.contact.kind, made.contact.id, made.contact.parent_id) == ("contact", "C9", "A7")
        assert row["data"]["first_create"] == kept
    else:  # FakeCrm's lookup finds no one, FakeAccounts maps no one
        assert made.contact is None and made.owner is None
        assert row["data"]["first_create"] == {"crm": "fake", "contact": None, "owner": None}


# ------------------------------------------------------------- G4: waiting jobs do not wait forever


async def test_forward_to_an_outside_number_is_written_after_a_while(pool):
    await seed(pool)
    crm = FakeCrm()
    r = records(pool, crm)
    await ring(pool, "F1", xcid="xc-out")
    await hang_up(pool, "F1", cause="forwarded", xcid="xc-out")
    await pool.execute("UPDATE call_records SET run_after = now() - interval '1 minute'")
    assert await r.once() == 0  # a next leg may still come
    assert (await job(pool))["state"] == "waiting"
    await pool.execute("UPDATE call_records SET run_after = now() - interval '3 minutes'")
    assert await r.once() == 1
    assert [c.call_id for c in crm.created] == ["F1"]
    assert (await job(pool))["state"] == "done"


async def test_waiting_job_with_a_leg_still_open_keeps_waiting(pool):
    await seed(pool)
    crm = FakeCrm()
    r = records(pool, crm)
    await ring(pool, "T1", xcid="xc-open")
    await ring(pool, "T2", xcid="xc-open")
    await hang_up(pool, "T1", cause="forwarded", xcid="xc-open")
    await pool.execute("UPDATE call_records SET run_after = now() - interval '1 hour'")
    assert await r.once() == 0
    assert (await job(pool))["state"] == "waiting"
    await hang_up(pool, "T2", cause="normalClearing", xcid="xc-open")
    assert (await job(pool))["state"] == "ready"


async def test_two_legs_hanging_up_at_once_make_the_job_ready(pool):
    """Two processes store the hangups of both legs of one xcid at the same time (READ COMMITTED): the
    second must see the first's leg ended, not both leave the job waiting for the other."""
    await seed(pool)
    await ring(pool, "L1", xcid="xc-race")
    await ring(pool, "L2", xcid="xc-race")
    async with pool.acquire() as one, pool.acquire() as two:
        tx1, tx2 = one.transaction(), two.transaction()
        await tx1.start()
        await tx2.start()
        await hang_up(one, "L1", cause="normalClearing", xcid="xc-race")
        second = asyncio.create_task(hang_up(two, "L2", cause="normalClearing", xcid="xc-race"))
        await asyncio.sleep(0.3)  # the second leg's hangup runs while the first is not committed yet
        await tx1.commit()
        await asyncio.wait_for(second, 5)
        await tx2.commit()
    row = await job(pool)
    assert row["state"] == "ready" and sorted(row["call_ids"]) == ["L1", "L2"]


# -------------------------------------------------------------- G5: notes that will never be written


async def test_note_for_an_account_without_call_logging(pool):
    await seed(pool, log_calls=False)
    r = records(pool, FakeCrm())
    await ring(pool, "N1")
    answer = await note(r, "N1", "x")
    assert answer == "call logging is off for this account"
    assert await pool.fetchval("SELECT count(*) FROM call_records") == 0
    assert await note(r, "NOSUCH", "x") is False


async def test_note_for_a_failed_record(pool):
    await seed(pool)
    r = records(pool, FakeCrm())
    await ring(pool, "N2")
    await hang_up(pool, "N2")
    await pool.execute("UPDATE call_records SET state = 'failed', last_error = 'HTTP 400 from fake'")
    assert await note(r, "N2", "too late") == "the call record could not be written"
    assert (await job(pool))["note"] is None


@pytest.mark.parametrize("state", ["waiting", "ready", "done"])
async def test_note_is_stored_for_a_job_that_will_be_written(pool, state):
    await seed(pool)
    r = records(pool, FakeCrm())
    await ring(pool, "N3")
    await hang_up(pool, "N3")
    await pool.execute("UPDATE call_records SET state = $1", state)
    assert await note(r, "N3", "fine") is True
    assert (await job(pool))["note"] == "fine"


async def test_schema_applies_again(pool):
    from hejcti import db

    await seed(pool)
    await ring(pool, "S1")
    await hang_up(pool, "S1")
    await pool.execute("UPDATE call_records SET note_sent = 3")
    await pool.execute(db.schema_sql())  # `hejcti migrate` on every start
    assert (await job(pool))["note_sent"] == 3
