"""The colleague directory's matching and ranking (hejcti/colleagues.py): case and accents ignored, umlauts
written out, by name, e-mail, extension or number digits, best first."""

from __future__ import annotations

import pytest

from hejcti import colleagues
from hejcti.sipgate_live import LiveUser
from hejcti.sipgate_shapes import Number, User


def live(uid: str, first: str, last: str, email: str, ext: str, *numbers: str) -> LiveUser:
    user = User.model_validate({"id": uid, "firstname": first, "lastname": last, "email": email,
                                "directDialIds": [ext]})
    return LiveUser(user, tuple(Number(number=n) for n in numbers))


USERS = [
    live("w0", "Ada", "Lovelace", "ada.lovelace@example.org", "10", "4921155500100"),
    live("w1", "Grace", "Hopper", "grace.hopper@example.org", "11", "4921155500101"),
    live("w2", "Jürgen", "Müller", "juergen.mueller@example.org", "12", "4921155500102"),
    live("w3", "Gerd", "Straßburger", "g.s@example.org", "110", "4930111222333"),
    live("w4", "Émile", "Zola", "emile@example.org", "13"),
    live("w5", "Samuel", "Adams", "sam@example.org", "14"),
    live("w6", "Zack", "Acer", "zack@example.org", "20"),
]


def ids(q: str, limit: int = 20) -> list[str]:
    return [u.id for u in colleagues.search(USERS, q, "DE", limit)]


@pytest.mark.parametrize("q, found", [
    ("muller", ["w2"]), ("MÜLLER", ["w2"]), ("mueller", ["w2"]), ("jurgen", ["w2"]), ("Jürgen M", ["w2"]),
    ("strassburger", ["w3"]), ("STRASSB", ["w3"]), ("emile", ["w4"]), ("ÉMILE ZOLA", ["w4"]),
    ("grace.hopper@", ["w1"]), ("hopper@example", ["w1"]),
    ("4921155500101", ["w1"]), ("+49 211 555 00101", ["w1"]), ("0211 55500102", ["w2"]), ("500100", ["w0"]),
    ("030 111222333", ["w3"]), ("nobody", []),
])
def test_matches_ignoring_case_and_accents(q, found):
    assert ids(q) == found


def test_the_exact_extension_comes_first_then_extensions_that_begin_with_it():
    assert ids("11") == ["w1", "w3"]  # 11 exactly, then 110
    assert ids("1")[:1] == ["w0"] and set(ids("1")) == {"w0", "w1", "w2", "w3", "w4", "w5"}
    assert "w6" not in ids("1")


def test_a_word_beginning_with_the_query_ranks_before_the_query_inside_a_word():
    assert ids("ada") == ["w0", "w5"]  # Ada and Adams both begin with it: by name
    assert ids("ams") == ["w5"]
    assert ids("ace") == ["w6", "w0", "w1"]  # Zack Acer first; "ace" is inside Ada Lovelace and Grace only
    assert ids("er") == ["w3", "w1", "w2", "w6"]  # inside names only: by name


def test_the_limit_and_the_empty_query():
    assert ids("", limit=3) == ["w0", "w4", "w3"]  # everyone by name: Ada, Émile, Gerd
    assert len(ids("example.org", limit=2)) == 2


def test_entry_shape():
    assert colleagues.entry(USERS[2], "ringing") == {
        "id": "w2", "name": "Jürgen Müller", "email": "juergen.mueller@example.org", "extension": "12",
        "numbers": ["+4921155500102"], "presence": "ringing"}
