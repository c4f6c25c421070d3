"""Every client message type of the union is a known type: a bad field of any of them is answered with its
type and field, never as an unknown type (protocol.parse reads the known types off the union)."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from hejcti import protocol

KINDS = [get_args(m.model_fields["type"].annotation)[0] for m in get_args(protocol.Message)]


def test_the_union_holds_the_contracts_message_types():
    assert sorted(KINDS) == ["auth", "call.dial", "call.hangup", "call.note", "call.transfer", "crm.credentials",
                             "directory.search", "me", "ping"]
    assert protocol.TYPES == set(KINDS)  # what parse() knows: the union, nothing written out again


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_field_of_each_type_names_the_type_and_field(kind):
    with pytest.raises(protocol.BadMessage) as bad:
        protocol.parse(json.dumps({"type": kind, "id": [7]}))  # an id is a string or an integer
    assert str(bad.value).startswith(f"{kind}: id."), str(bad.value)
    assert bad.value.kind == kind and bad.value.field.startswith("id.")


def test_a_type_not_in_the_union_is_unknown():
    with pytest.raises(protocol.BadMessage) as bad:
        protocol.parse('{"type": "call.park", "id": 3}')
    assert str(bad.value) == "unknown type 'call.park'" and bad.value.msg_id == 3
