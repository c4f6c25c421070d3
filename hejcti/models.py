"""Domain: a stored call event and the server events sessions get from it (CONTRACT §5). No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hejcti import phones

EVENTS = ("newCall", "answer", "hangup", "dtmf")


def iso(at: datetime | str | None) -> str | None:
    if at is None:
        return None
    if isinstance(at, str):  # a NOTIFY payload: PostgreSQL's text form, in the session's time zone
        try:
            at = datetime.fromisoformat(at)
        except ValueError:
            return at
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Event:
    """One stored push, as the listener gets it (NOTIFY payload or a catch-up row)."""

    id: int
    account_id: str
    call_id: str
    event: str
    data: dict[str, Any]
    at: str

    @classmethod
    def from_mapping(cls, m: Any) -> Event:
        return cls(id=int(m["id"]), account_id=m["account_id"], call_id=m["call_id"], event=m["event"],
                   data=m["data"] or {}, at=iso(m["at"]) or "")

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self.data.get("users") or ())

    @property
    def number(self) -> str | None:
        return self.data.get("number")

    @property
    def is_voicemail_leg(self) -> bool:
        return self.event == "newCall" and bool(self.data.get("voicemail"))


def ringing(ev: Event, region: str, contacts: list[dict[str, Any]], resolved: bool) -> dict[str, Any]:
    d = ev.data
    return {
        "type": "call.ringing",
        "call_id": ev.call_id,
        "seq": ev.id,
        "direction": d.get("direction"),
        "number": d.get("number"),
        "orig_call_id": d.get("orig_call_id") if d.get("orig_call_id") not in (None, "", ev.call_id) else None,
        "diversion": d.get("diversion"),
        "display": phones.display(d.get("number"), region),
        "anonymous": bool(d.get("anonymous")),
        "users": list(ev.users),
        "contacts": contacts,
        "resolved": resolved,
        "at": ev.at,
    }


def resolved(ev: Event, contacts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "call.resolved", "call_id": ev.call_id, "contacts": contacts}


def answered(ev: Event) -> dict[str, Any]:
    voicemail = bool(ev.data.get("voicemail"))
    return {"type": "call.answered", "call_id": ev.call_id, "seq": ev.id,
            "by": None if voicemail else ev.data.get("by"), "voicemail": voicemail, "at": ev.at}


def ended(ev: Event) -> dict[str, Any]:
    return {"type": "call.ended", "call_id": ev.call_id, "seq": ev.id, "cause": ev.data.get("cause"),
            "duration_s": ev.data.get("duration_s"), "at": ev.at}


def logged(call_id: str, crm: str, record_id: str, url: str | None) -> dict[str, Any]:
    return {"type": "call.logged", "call_id": call_id, "crm": crm, "record_id": record_id, "url": url}
