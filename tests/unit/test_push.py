"""sipgate's push format: every fixture parsed, every malformed body refused with one line, the signature."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from hejcti.errors import BadRequestError
from tests.conftest import FIXTURES
from webhooks.sipgate import parse, signature_valid

SIP = FIXTURES / "sipgate"


def body(name: str, line: int = 0) -> bytes:
    return (SIP / name).read_bytes().split(b"\n")[line]


def test_new_call_in():
    p = parse(body("newCall_in.txt"))
    assert (p.event, p.dedup) == ("newCall", "")
    assert p.call_id.startswith("54566B150B0C0D3A5DC32B")
    assert p.data["direction"] == "in"
    assert p.data["number"] == "+4915791234567" and p.data["own_number"] == "+492111234567"
    assert p.data["user_ids"] == ["w0"] and p.data["voicemail"] is False and p.data["anonymous"] is False
    assert p.data["xcid"] == "d4c60418bab98ef4" and p.data["orig_call_id"] == p.call_id


def test_group_call_keeps_ids_and_drops_names():
    p = parse(body("newCall_in_group.txt"))
    assert p.data["user_ids"] == ["w0", "w1", "w2"]
    text = repr(p.data)
    for name in ("Alice", "Bob", "Jürgen", "Weiß", "1234567w0"):
        assert name not in text  # privacy: only ids are kept


def test_raw_and_encoded_brackets_are_the_same():
    encoded = body("newCall_in_group.txt")
    raw = encoded.replace(b"%5B%5D", b"[]")
    assert parse(raw).data == parse(encoded).data


def test_anonymous_caller():
    p = parse(body("newCall_in_anonymous.txt"))
    assert p.data["number"] is None and p.data["anonymous"] is True


def test_outgoing_call_names_the_callee():
    p = parse(body("newCall_out.txt"))
    assert p.data["direction"] == "out"
    assert p.data["number"] == "+4915799912345" and p.data["own_number"] == "+492111234567"


def test_forwarded_voicemail_leg():
    p = parse(body("newCall_in_forwarded_voicemail.txt"))
    assert p.data["voicemail"] is True and p.data["user_ids"] == []
    assert p.data["diversion"] == "+492111234567"
    assert p.data["orig_call_id"] != p.call_id


def test_real_push_with_empty_user_and_no_ids():
    p = parse(body("newCall_in_signed_real.txt"))
    assert p.data["user_ids"] == [] and p.data["voicemail"] is False
    assert p.data["number"] == "+491776249000"


@pytest.mark.parametrize("tail", ["", "&user%5B%5D=", "&userId%5B%5D=&user%5B%5D="])
def test_user_lists_absent_or_empty(tail):
    p = parse(f"event=newCall&direction=in&from=4930123456&to=4940123456&callId=ABC{tail}".encode())
    assert p.data["user_ids"] == []


def test_answers():
    a = parse(body("answer_in.txt"))
    assert a.data["by"] == "w1" and a.data["voicemail"] is False
    assert "answering_number" not in a.data and "answeringNumber" not in repr(a.data)  # CONTRACT §6
    vm = parse(body("answer_in_voicemail.txt"))
    assert vm.data["by"] is None and vm.data["voicemail"] is True
    out = parse(body("answer_out.txt"))
    assert out.data["by"] is None and out.data["voicemail"] is False


@pytest.mark.parametrize("line, cause", list(enumerate(
    ["normalClearing", "busy", "cancel", "noAnswer", "congestion", "notFound", "forwarded"])))
def test_every_documented_hangup_cause(line, cause):
    assert parse(body("hangup_causes.txt", line)).data["cause"] == cause


def test_unknown_cause_is_kept_verbatim():
    assert parse(b"event=hangup&callId=X&cause=chanunavail").data["cause"] == "chanunavail"


def test_dtmf_keeps_leading_zero_and_dedups_by_body():
    p = parse(body("dtmf.txt"))
    assert p.data["dtmf"] == "0815" and len(p.dedup) == 32
    empty, omitted = parse(body("dtmf_no_input.txt", 0)), parse(body("dtmf_no_input.txt", 1))
    assert empty.data["dtmf"] == omitted.data["dtmf"] == ""
    assert empty.dedup != omitted.dedup  # two different bodies are two pushes


@pytest.mark.parametrize("raw, number", [("%2B4915791234567", "+4915791234567"), ("123456e0", None),
                                         ("", None), ("anonymous", None)])
def test_odd_from_values(raw, number):
    assert parse(f"event=newCall&direction=in&from={raw}&to=49301&callId=C".encode()).data["number"] == number


@pytest.mark.parametrize("raw, reason", [
    (b"", "missing event"),
    (b"callId=X", "missing event"),
    (b"event=data&callId=X", "unknown event"),
    (b"event=newCall", "missing callId"),
    (b"event=newCall&callId=", "missing callId"),
    (b"event=newCall&callId=" + b"A" * 300, "callId"),
    (b"event=newCall&callId=\xff\xfe", "UTF-8"),
])
def test_malformed_bodies_are_refused_with_one_line(raw, reason):
    with pytest.raises(BadRequestError) as e:
        parse(raw)
    assert reason in str(e.value) and "\n" not in str(e.value)


ARABIC = "٤٩١٥٧٩١٢٣٤٥٦٧"  # 4915791234567 in Arabic-Indic digits
SUPERSCRIPT = "⁴⁹¹⁵⁷⁹¹²³⁴⁵⁶⁷"
FULLWIDTH = "４９１５７９１２３４５６７"
NUMBER_FIELDS = ["from", "to", "diversion", "answeringNumber"]
#: every field the parser keeps (or reads as an id), with the event that carries it
ID_FIELDS = [("newCall", "origCallId"), ("newCall", "xcid"), ("newCall", "userId[]"),
             ("newCall", "fullUserId[]"), ("answer", "userId"), ("answer", "fullUserId"),
             ("hangup", "cause"), ("dtmf", "dtmf")]


def push(event: str, key: str, value: str) -> bytes:
    return urlencode([("event", event), ("callId", "C1"), ("direction", "in"), (key, value)]).encode()


@pytest.mark.parametrize("event, key", [*ID_FIELDS, *[("answer", k) for k in NUMBER_FIELDS]])
def test_an_id_over_250_characters_is_refused(event, key):
    assert parse(push(event, key, "4" * 250)).call_id == "C1"  # 250 is allowed
    with pytest.raises(BadRequestError) as e:
        parse(push(event, key, "4" * 251))
    assert "250" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("event, key", ID_FIELDS)
@pytest.mark.parametrize("value", ["a\x07b", "w0\n", "x\u200by", "a\tb", "\ud7ff\U0010fffe"])
def test_an_id_that_is_not_printable_is_refused(event, key, value):
    with pytest.raises(BadRequestError) as e:
        parse(push(event, key, value))
    assert "printable" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("key", NUMBER_FIELDS)
@pytest.mark.parametrize("value", [ARABIC, SUPERSCRIPT, FULLWIDTH, "4915791234²", "+٤٩١٥٧٩١٢٣٤٥٦٧", "49१५७९"])
def test_a_number_with_digits_other_than_ascii_is_refused(key, value):
    with pytest.raises(BadRequestError) as e:
        parse(push("answer", key, value))
    assert "ASCII" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("key", NUMBER_FIELDS)
@pytest.mark.parametrize("value", ["anonymous", "123456e0", "", "+49 30 1", "unknown"])
def test_sipgates_non_numbers_stay_accepted_as_no_number(key, value):
    data = parse(push("answer", key, value)).data
    assert data["number"] is None or key != "from"
    assert all(v is None or re.fullmatch(r"\+[0-9]{3,15}", v, re.ASCII)
               for v in (data["number"], data["own_number"], data["diversion"]))


def test_a_body_ending_in_a_newline_keeps_its_last_value():
    assert parse(b"event=newCall&callId=C1&xcid=8419b3450b75cd19\r\n").data["xcid"] == "8419b3450b75cd19"


def test_real_signature_verifies():
    assert signature_valid(body("newCall_in_signed_real.txt"),
                           (SIP / "newCall_in_signed_real.signature").read_text())


@pytest.mark.parametrize("mutate", [
    lambda b, s: (b.replace(b"491776249000", b"491776249001"), s),
    lambda b, s: (b + b"\n", s),
    lambda b, s: (b, "not base64 !!"),
    lambda b, s: (b, ""),
    lambda b, s: (b, None),
    lambda b, s: (b, s[:-8] + "AAAAAAA="),
])
def test_tampered_or_missing_signature_fails(mutate):
    b, s = mutate(body("newCall_in_signed_real.txt"), (SIP / "newCall_in_signed_real.signature").read_text())
    assert signature_valid(b, s) is False
