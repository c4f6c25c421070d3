"""What sipgate's REST API answers (reference sipgate.md §5), as pydantic models tolerant of absent fields:
``null`` reads as absent, unknown fields are ignored (kept in ``WebhookSettings``, whose PUT sends the whole
object back). Data only, no I/O."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


class Shape(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_as_absent(cls, data: Any) -> Any:
        """sipgate sends ``null`` for fields it has no value of: read as absent (the default)."""
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class UserInfo(Shape):
    sub: str
    master_sip_id: str | None = None
    domain: str | None = None
    locale: str | None = None


class User(Shape):
    id: str
    firstname: str | None = None
    lastname: str | None = None
    email: str | None = None
    default_device: str | None = None
    admin: bool = False
    direct_dial_ids: list[str] = []
    busy_on_busy: bool | None = None
    timezone: str | None = None

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.firstname, self.lastname) if p)


class Device(Shape):
    id: str
    alias: str | None = None
    type: str | None = None
    online: bool = False
    dnd: bool = False
    caller_id: str | None = None
    owner: str | None = None


class Number(Shape):
    id: str | None = None
    number: str
    localized: str | None = None
    type: str | None = None
    endpoint_id: str | None = None
    endpoint_alias: str | None = None
    endpoint_url: str | None = None  # e.g. ``/v2/w0/phonelines/p0``: names the user whose phoneline it is

    @property
    def e164(self) -> str | None:
        digits = self.number.removeprefix("+")
        return "+" + digits if digits.isdigit() else None


class WebhookSettings(Shape):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)
    incoming_url: str | None = None
    outgoing_url: str | None = None
    log: bool | None = None
    whitelist: list[str] | None = None

    def raw(self) -> dict[str, Any]:
        """Every field as sipgate names it, unknown ones included (a PUT sends the whole object back)."""
        return self.model_dump(by_alias=True)
