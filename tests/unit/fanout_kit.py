"""A fan-out over socket-less sessions: each session's queue is what its extension would receive."""

from __future__ import annotations

from typing import Any

from hejcti.metrics import Metrics
from hejcti.sessions import Hub, Session
from workers.fanout import Fanout


class PopTimes:
    """The one store call a fan-out makes itself (its ring-to-pop times, written after the fact): kept here."""

    def __init__(self) -> None:
        self.written: list[tuple[Any, ...]] = []

    async def execute(self, name: str, *args: Any) -> None:
        assert name == "calls_popped", name
        self.written.append(args)


def fanout_with_sessions(accounts: Any, *, lookups: Any = None,
                         users: tuple[tuple[str, str | None], ...] = (("w0", None),),
                         workers: int = 1) -> tuple[Fanout, list[Session]]:
    """``users``: (sipgate user, mapped CRM user) of each session, all of account acc_1."""
    metrics = Metrics()
    hub = Hub(metrics)
    sessions = [Session(None, user_id=f"usr_{u}", account_id="acc_1", sipgate_user=u,  # type: ignore[arg-type]
                        crm_user=crm_user, limit=10, metrics=metrics) for u, crm_user in users]
    for s in sessions:
        hub.add(s)
    fanout = Fanout(hub=hub, store=PopTimes(), accounts=accounts, lookups=lookups, metrics=metrics,  # type: ignore[arg-type]
                    deadline_s=1.5, workers=workers)
    return fanout, sessions
