"""What an operator reads: structured lines with masked numbers, and never a token or a contact name."""

from __future__ import annotations

import io
import json

import pytest

from hejcti import logs
from tests.e2e.test_fanout import hangup, new_call


@pytest.fixture
def captured():
    buf = io.StringIO()
    logs.configure("json", "debug", stream=buf)
    yield buf
    logs.configure("json", "info")


async def test_logs_mask_numbers_and_hold_no_token_or_name(captured, harness):
    acc = await harness.account(contacts=[("c1", "Julia Schmidt", "Geheim GmbH", "+4915791234567",
                                           "julia@example.com", "")])
    token = await harness.user(acc["account_id"], "w0")
    rep = await harness.connect(token)
    await rep.request({"type": "crm.credentials", "access_token": "crm-secret-token-123", "id": 1})
    await harness.post(acc["url"], new_call("CALLPRIV"))
    await rep.expect("call.ringing")
    await harness.post(acc["url"], hangup("CALLPRIV"))
    await rep.expect("call.ended")
    await harness.post(acc["url"] + "x", new_call("CALLPRIV2"))  # unknown token: 404, logged or not
    text = captured.getvalue()
    events = [json.loads(line) for line in text.splitlines()]
    names = {e["event"] for e in events}
    assert {"webhook.accepted", "pop.sent", "session.opened", "crm.lookup.done"} <= names
    for secret in ("4915791234567", "15791234567", "91234567", "492111234567", "Julia", "Schmidt", "Geheim",
                   "julia@example.com", token, acc["webhook_token"], acc["admin_token"], "crm-secret-token-123"):
        assert secret not in text, secret
    accepted = [e for e in events if e["event"] == "webhook.accepted"]
    assert accepted and all(e["number"] == "…567" for e in accepted)
    assert all(e["account"] == acc["account_id"] for e in accepted)


def test_scrub_masks_numbers_inside_free_text():
    event = logs.scrub(None, "info", {"event": "x", "error": "bad number +49 157 91234567 here", "token": "abc",
                                      "phone": "0157 91234567", "host": "127.0.0.1"})
    assert event["error"] == "bad number …567 here"
    assert event["token"] == "[redacted]" and event["phone"] == "…567" and event["host"] == "127.0.0.1"
