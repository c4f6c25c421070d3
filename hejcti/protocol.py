"""The WebSocket protocol (CONTRACT §5): one pydantic model per client message, a discriminated union on
``type``, and the close codes. No I/O."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hejcti.errors import HejctiError

# close codes: 4000–4499 reconnect and resume, 4500–4999 do not reconnect with this token
CLOSE_SLOW_READER = 4001
CLOSE_UNAVAILABLE = 4002  # the server cannot check the token now (database down): try again
CLOSE_AUTH_INVALID = 4500
CLOSE_AUTH_PROTOCOL = 4501
CLOSE_TOKEN_REVOKED = 4502  # the user's token was replaced, or the user removed
CLOSE_ACCOUNT_DELETED = 4503
CLOSE_GOING_AWAY = 1001

MessageId = str | int | None
MAX_SEQ = 2**63 - 1  # seqs are PostgreSQL bigints
#: one ``call.note``, in characters (in UTF-8 it fits the 64 KiB frame limit whatever the characters)
NOTE_MAX_CHARS = 10_000
#: all notes of one call, newlines between them included: Salesforce's Task Description, the smallest field the
#: CRMs write a note into, holds 32,000 characters; the rest is room for the call facts written before the note
#: and the blank lines between appended parts
NOTES_MAX_CHARS = 30_000


class NoteTooLongError(HejctiError):
    """A note (or a call's notes together) past what the CRMs accept: answered ``note_too_long``."""


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: MessageId = None


class Auth(_Msg):
    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=512)
    resume: int | None = Field(default=None, ge=0, le=MAX_SEQ, strict=True)  # "5", 5.0, true are no seq


class Ping(_Msg):
    type: Literal["ping"]


class CrmCredentials(_Msg):
    type: Literal["crm.credentials"]
    access_token: str = Field(min_length=1, max_length=8192, repr=False)
    instance_url: str | None = Field(default=None, max_length=2048)


class CallNote(_Msg):
    type: Literal["call.note"]
    call_id: str = Field(min_length=1, max_length=250)
    text: str = Field(min_length=1, max_length=NOTE_MAX_CHARS)


# -- sipgate actions (CONTRACT §5.1), answered by hejcti/actions.py -------------------------------------------


class Colleague(BaseModel):
    """``{"user":"w1"}``: a sipgate user of the account, as the target of a dial or transfer."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    user: str = Field(min_length=1, max_length=64)


#: a number as written (read in the account's region), or a colleague
Target = Annotated[str, Field(min_length=1, max_length=64)] | Colleague


class Me(_Msg):
    type: Literal["me"]


class DirectorySearch(_Msg):
    type: Literal["directory.search"]
    q: str = Field(default="", max_length=100)
    limit: int = Field(default=20, ge=1, le=50, strict=True)


class CallDial(_Msg):
    type: Literal["call.dial"]
    to: Target
    device: str | None = Field(default=None, min_length=1, max_length=64)


class CallTransfer(_Msg):
    type: Literal["call.transfer"]
    call_id: str = Field(min_length=1, max_length=250)
    to: Target
    attended: bool = Field(default=False, strict=True)


class CallHangup(_Msg):
    type: Literal["call.hangup"]
    call_id: str = Field(min_length=1, max_length=250)


SIPGATE_ACTIONS = (Me, DirectorySearch, CallDial, CallTransfer, CallHangup)

Message = Auth | Ping | CrmCredentials | CallNote | Me | DirectorySearch | CallDial | CallTransfer | CallHangup
ClientMessage = Annotated[Message, Field(discriminator="type")]
_adapter: TypeAdapter[Any] = TypeAdapter(ClientMessage)
#: every client message's ``type``, read off the union: any other is answered "unknown type"
TYPES = frozenset(get_args(m.model_fields["type"].annotation)[0] for m in get_args(Message))


class BadMessage(Exception):
    def __init__(self, message: str, msg_id: MessageId = None, *, kind: str | None = None,
                 field: str | None = None, code: str = "bad_message") -> None:
        super().__init__(message)
        self.msg_id = msg_id
        self.kind = kind  # the message's type, when it had a known one
        self.field = field  # the first field that did not validate
        self.code = code  # the ``error`` reply's code: bad_message, or note_too_long

    @property
    def bad_token(self) -> bool:
        """An ``auth`` whose token is not a token at all: answered as an invalid token (4500), not 4501."""
        return self.kind == "auth" and self.field == "token"


def parse(text: str) -> Message:
    """Parse one text frame. Raises ``BadMessage`` with a short reason and the message's id if it had one."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise BadMessage("not JSON") from e
    if not isinstance(raw, dict):
        raise BadMessage("a message is a JSON object with a \"type\"")
    msg_id = raw.get("id") if isinstance(raw.get("id"), str | int) and not isinstance(raw.get("id"), bool) else None
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise BadMessage("missing \"type\"", msg_id)
    for key, value in raw.items():
        if isinstance(value, str) and "\x00" in value:  # nothing we store or forward can hold one
            raise BadMessage(f"{kind[:40]}: {key[:40]}: contains a NUL character", msg_id, kind=kind, field=key)
    try:
        return _adapter.validate_python(raw)
    except ValidationError as e:
        if kind not in TYPES:
            raise BadMessage(f"unknown type {kind[:40]!r}", msg_id) from e
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or kind
        field = None if first["type"] == "missing" else where  # an absent field is not a bad value
        if kind == "call.note" and field == "text" and first["type"] == "string_too_long":
            raise BadMessage(f"call.note: text: at most {NOTE_MAX_CHARS} characters", msg_id, kind=kind,
                             field=field, code="note_too_long") from e
        reason = first["msg"]
        if field is not None and field.split(".")[0] == "to" and kind in ("call.dial", "call.transfer"):
            # a "to" of the wrong kind: the union's own words (to.constrained-str) help nobody
            where, reason = "to", 'a number (a string) or {"user": ID}'
        raise BadMessage(f"{kind}: {where}: {reason}", msg_id, kind=kind, field=field) from e


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def reply(kind: str, msg_id: MessageId, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind, **fields}
    if msg_id is not None:
        out["id"] = msg_id
    return out
