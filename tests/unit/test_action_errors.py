"""The codes of conditions found here, not sipgate's (CONTRACT §5.1 keeps ``sipgate_refused`` for sipgate's own
refusals): a session user sipgate does not list, and an account deleted while an action runs, are ``not_found``
with a message that says which."""

from __future__ import annotations

from types import SimpleNamespace

from hejcti import protocol
from hejcti.actions import Actions
from hejcti.config import Settings


class Sipgate:
    """The account's live listing: nobody (the session's user was removed in sipgate), or everyone asked."""

    def __init__(self, users=()) -> None:
        self._users = list(users)

    async def users(self, account_id):
        return self._users


class Store:
    """An account that is gone: its settings row is not there."""

    async def fetchrow(self, name, *args):
        assert name == "account_settings"
        return None

    async def fetch(self, name, *args):
        return []


SESSION = SimpleNamespace(id="ses_1", account_id="acc_1", sipgate_user="w9", crm_user=None)


async def test_a_user_sipgate_does_not_list_is_not_found():
    actions = Actions(sipgate=Sipgate(), store=Store(), settings=Settings())
    reply = await actions.answer(SESSION, protocol.parse('{"type":"me","id":"m"}'))
    assert reply == {"type": "error", "id": "m", "code": "not_found",
                     "message": "the session's user w9 is not a user of the connected sipgate account"}


async def test_an_account_deleted_meanwhile_is_not_found():
    actions = Actions(sipgate=Sipgate(), store=Store(), settings=Settings())
    reply = await actions.answer(SESSION, protocol.parse('{"type":"directory.search","q":"a","id":"s"}'))
    assert reply == {"type": "error", "id": "s", "code": "not_found", "message": "the account was deleted"}
