"""The CRM OAuth flow's state (hejcti/crm_oauth.py): signed, not stored; refused when changed, expired or
signed with another key."""

import pytest

from hejcti.crm_oauth import RefusedError, States


def test_a_state_opens_within_its_lifetime_only():
    states = States(b"k" * 32, ttl_s=600)
    state = states.sign({"k": "hubspot", "r": "https://x.chromiumapp.org/crm", "s": "abcdefgh"}, now=1000)
    assert states.open(state, now=1600)["r"] == "https://x.chromiumapp.org/crm"
    with pytest.raises(RefusedError, match="expired_state"):
        states.open(state, now=1601)
    with pytest.raises(RefusedError, match="expired_state"):
        states.open(state, now=999)  # from the future


@pytest.mark.parametrize("change", ["body", "mac", "key", "garbage"])
def test_a_changed_or_foreign_state_is_refused(change):
    states = States(b"k" * 32)
    state = states.sign({"k": "hubspot", "r": "https://x.chromiumapp.org/crm", "s": "abcdefgh"})
    body, mac = state.split(".")
    forged = {"body": body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + mac,
              "mac": body + "." + mac[::-1], "key": States(b"o" * 32).sign({"k": "hubspot"}),
              "garbage": "%%%.###"}[change]
    with pytest.raises(RefusedError, match="bad_state"):
        states.open(forged)
