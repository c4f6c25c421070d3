"""Each group of sessions gets the contacts ranked for its own mapped CRM user, and nobody else's."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hejcti.crm.base import Contact
from hejcti.lookup import Account
from hejcti.models import Event
from tests.unit.fanout_kit import fanout_with_sessions

OLD, NEW = datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC)
CONTACTS = [Contact(crm="hubspot", kind="contact", id="mine", name="Mine", owner_id="u-me", modified_at=OLD),
            Contact(crm="hubspot", kind="contact", id="newest", name="Newest", owner_id="u-other", modified_at=NEW)]


class Accounts:
    async def get(self, account_id: str) -> Account:
        return Account(id=account_id, crm_kind="hubspot", crm_instance=None, region="DE", log_calls=False)


class CachedLookups:
    def cached(self, account_id: str, number: str) -> list[Contact]:
        return list(CONTACTS)  # as the lookup ranked them for whichever session gave the token: u-me's first


async def test_an_unmapped_session_gets_no_other_users_records_first():
    fanout, (mapped, unmapped) = fanout_with_sessions(Accounts(), lookups=CachedLookups(),
                                                      users=(("w0", "u-me"), ("w1", None)))
    await fanout.handle(Event(id=1, account_id="acc_1", call_id="C1", event="newCall", at="2026-12-02T01:00:00Z",
                              data={"direction": "in", "number": "+4915791234567", "users": ["w0", "w1"]}))
    assert [c["id"] for c in json.loads(mapped._queue[0])["contacts"]] == ["mine", "newest"]
    assert [c["id"] for c in json.loads(unmapped._queue[0])["contacts"]] == ["newest", "mine"]  # newest first
