"""One call through the whole product: webhook in, stored, fanned out, popped, answered, ended."""

from tests.conftest import sipgate_fixture

NEW_CALL = sipgate_fixture("newCall_in.txt")
ANSWER = (b"event=answer&callId=54566B150B0C0D3A5DC32B1C705411EB3FA35E1F3B605F10E1C0640B473D513467353CA00705"
          b"&user=Alice+Example&userId=w0&fullUserId=1234567w0&from=4915791234567&to=492111234567&direction=in"
          b"&answeringNumber=492111234567")
HANGUP = (b"event=hangup&callId=54566B150B0C0D3A5DC32B1C705411EB3FA35E1F3B605F10E1C0640B473D513467353CA00705"
          b"&cause=normalClearing&to=492111234567&from=4915791234567&direction=in")


async def test_ringing_answered_ended_with_contact(harness):
    acc = await harness.account(contacts=[("c1", "Julia Schmidt", "ACME GmbH", "01579 1234567", "j@acme.de",
                                           "https://crm.example/c1")])
    token = await harness.user(acc["account_id"], "w0")
    rep = await harness.connect(token)

    status, body = await harness.post(acc["url"], NEW_CALL)
    assert status == 200
    assert body == (f'<?xml version="1.0" encoding="UTF-8"?><Response onAnswer="{acc["url"]}" '
                    f'onHangup="{acc["url"]}"/>')
    ringing = await rep.expect("call.ringing")
    assert ringing["number"] == "+4915791234567"
    assert ringing["display"] == "01579 1234567"
    assert ringing["direction"] == "in"
    assert ringing["users"] == ["w0"]
    assert ringing["resolved"] is True
    assert ringing["anonymous"] is False
    assert ringing["orig_call_id"] is None
    assert ringing["contacts"] == [{"crm": "directory", "kind": "contact", "id": "c1", "name": "Julia Schmidt",
                                    "company": "ACME GmbH", "url": "https://crm.example/c1"}]

    assert (await harness.post(acc["url"], ANSWER))[0] == 200
    answered = await rep.expect("call.answered")
    assert answered["by"] == "w0" and answered["voicemail"] is False

    status, body = await harness.post(acc["url"], HANGUP)
    assert (status, body) == (200, '<?xml version="1.0" encoding="UTF-8"?><Response/>')
    ended = await rep.expect("call.ended")
    assert ended["cause"] == "normalClearing"
    assert isinstance(ended["duration_s"], int) and ended["duration_s"] >= 0
    assert ringing["seq"] < answered["seq"] < ended["seq"]
