"""A session's send side, without a socket: bounded queue, seq dedup, and a bounded memory of seqs."""

from __future__ import annotations

from hejcti.metrics import Metrics
from hejcti.sessions import SEQ_WINDOW, Session


def session(limit: int = 10) -> Session:
    return Session(None, user_id="usr_1", account_id="acc_1", sipgate_user="w0", crm_user=None,  # type: ignore[arg-type]
                   limit=limit, metrics=Metrics())


async def test_a_seq_is_queued_once():
    s = session()
    assert s.send(b"a", seq=7) and s.send(b"a", seq=7)
    assert s.pending == 1


async def test_memory_of_seqs_stays_bounded_on_a_busy_session():
    s = session()
    for seq in range(1, 100_001):
        s.send(b"x", seq=seq)
        s._queue.clear()  # the writer took it
    assert len(s.sent_seqs) <= 2 * SEQ_WINDOW
    assert s.send(b"x", seq=100_000) and s.pending == 0  # the newest are still remembered


async def test_full_queue_closes_the_session_as_slow():
    s = session(limit=3)
    assert all(s.send(b"x") for _ in range(3))
    assert s.send(b"x") is False and s.closed and s.pending == 0
    s._closer.cancel()  # the close itself is tested with a real socket in tests/e2e/test_sessions.py
