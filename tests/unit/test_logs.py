"""The log scrubber: a phone number in any script's digits is masked, in a number key or in free text."""

from __future__ import annotations

import pytest

from hejcti import logs

ARABIC = "٤٩١٥٧٩١٢٣٤٥٦٧"  # 4915791234567 in Arabic-Indic digits
SUPERSCRIPT = "⁴⁹¹⁵⁷⁹¹²³⁴⁵⁶⁷"
FULLWIDTH = "４９１５７９１２３４５６７"


@pytest.mark.parametrize("number", [ARABIC, SUPERSCRIPT, FULLWIDTH, "+" + SUPERSCRIPT, "+49 ١٥٧ ٩١٢٣٤٥٦٧",
                                    "+49\u00a0157\u00a091234567", "4915791234567"])
def test_numbers_of_every_script_are_masked(number):
    event = logs.scrub(None, "info", {"event": "x", "number": number, "error": f"bad from={number}, retry",
                                      "detail": number})
    assert event["number"] == event["detail"] == "…567"
    assert event["error"] == "bad from=…567, retry"


def test_short_runs_ids_and_addresses_stay():
    text = "port 8080, seq 1234, call 54566B150B0C0D3A5D534D, host 127.0.0.1, v1.2.3456789, ٣ tries"
    assert logs.scrub(None, "info", {"event": "x", "error": text})["error"] == text
