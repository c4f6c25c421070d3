"""Pipedrive's call log found again (``_same_call``): numbers compared by their ASCII digits only (hejcti.phones's
rule: no other numeric character is a digit), times without an offset read as UTC."""

from __future__ import annotations

from hejcti.crm.pipedrive import _same_call

SENT = {"user_id": 7, "person_id": 12, "from_phone_number": "+4921155500100", "to_phone_number": "+4930123456",
        "outcome": "connected", "duration": "42", "start_time": "2026-12-06 03:00:00",
        "end_time": "2026-12-06 03:00:42"}


def test_numbers_compare_by_their_ascii_digits_only():
    log = {**SENT, "from_phone_number": "+49 211 555 00100", "to_phone_number": "+49 (30) 123456"}
    assert _same_call(log, SENT) == 0
    foreign = {**SENT, "from_phone_number": "+49 211 555 00100\u0661", "to_phone_number": "+4930123456\u00b2"}
    assert _same_call(foreign, SENT) == 0  # ١ and ² are no digits: dropped as the spaces are


def test_times_without_an_offset_are_utc_and_with_one_as_they_say():
    log = {**SENT, "start_time": "2026-12-06T04:00:01+01:00", "end_time": "2026-12-06T03:00:42Z"}
    assert _same_call(log, SENT) == 1
    assert _same_call({**SENT, "start_time": "2026-12-06 03:00:05"}, SENT) is None
    assert _same_call({**SENT, "start_time": "not a time"}, SENT) is None
