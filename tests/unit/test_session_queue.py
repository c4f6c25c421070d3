"""A session's send side, without a socket: bounded queue, seq dedup, and a bounded memory of seqs."""

from __future__ import annotations

from hejcti.metrics import Metrics
from hejcti.sessions import REPLAYING, SEQ_WINDOW, Session


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


async def test_live_frames_wait_behind_a_resume_replay():
    s = session(limit=100)
    s.hold()
    assert s.send(b"live-10", seq=10)  # arrives while the replay is still running
    mark = REPLAYING.set(s)
    try:
        s.send(b"missed-5", seq=5)
        s.send(b"missed-10", seq=10)  # the replay found it too
    finally:
        REPLAYING.reset(mark)
    s.release()
    assert list(s._queue) == [b"missed-5", b"missed-10"]  # what was missed first, nothing twice
    assert s.send(b"live-11", seq=11) and list(s._queue)[-1] == b"live-11"
