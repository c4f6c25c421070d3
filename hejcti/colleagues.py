"""The colleague directory of ``directory.search`` (CONTRACT §5.1): which of an account's sipgate users match a
query, best first. Case and accents are ignored ("muller" finds "Müller", "strasse" finds "Straße"; German
umlauts also match written out: "mueller"); a query of digits matches an extension or a number. Pure
functions on ``LiveUser``s, no I/O.

Rank, best first: the extension exactly; a name or one of its words beginning with the query; the e-mail
beginning with it; an extension or number containing the query's digits; the name containing it anywhere;
the e-mail containing it. Ties go by name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hejcti import phones
from hejcti.sipgate_live import LiveUser

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})
_WORDS = re.compile(r"[^\w]+")
#: a query that is a number as people write one: digits and the usual separators, nothing else
_DIALLED = re.compile(r"\+?[0-9][0-9\s\-/().]*")
MIN_NUMBER_DIGITS = 3  # fewer digits would find every number of the company


def fold(text: str) -> str:
    """Lower case without accents: NFKD, combining marks dropped, then case-folded (which makes ß "ss")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def folds(text: str) -> tuple[str, ...]:
    """``text`` folded, and folded with German umlauts written out (ü → ue) when that differs."""
    plain = fold(text)
    spelled = fold(text.translate(_UMLAUTS))
    return (plain,) if spelled == plain else (plain, spelled)


@dataclass(frozen=True)
class Query:
    text: str  # folded
    digits: str  # the digits of a query written as a number, else ""
    e164: str | None  # that number read in the account's region

    @classmethod
    def parse(cls, q: str, region: str) -> Query:
        q = q.strip()
        dialled = bool(_DIALLED.fullmatch(q))
        return cls(text=fold(q), digits=phones.digits(q) if dialled else "",
                   e164=phones.normalize(q, region) if dialled else None)


def _rank(user: LiveUser, q: Query) -> int | None:
    """0 is best; None: no match."""
    if not q.text:
        return 5  # an empty query lists everyone, by name
    extension = user.extension or ""
    if q.digits and q.digits == extension:
        return 0
    names = folds(user.user.name)
    if any(n.startswith(q.text) or any(w.startswith(q.text) for w in _WORDS.split(n)) for n in names):
        return 1
    email = fold(user.user.email or "")
    if email.startswith(q.text):
        return 2
    if q.digits and _number_match(user, q):
        return 3
    if any(q.text in n for n in names):
        return 4
    if q.text in email:
        return 5
    return None


def _number_match(user: LiveUser, q: Query) -> bool:
    """The query's number is one of the user's, or its digits are part of one (a leading 0 of the national
    form dropped: "0211 555" is in +49 211 555…), or the user's extension begins with them."""
    if q.e164 is not None and q.e164 in user.e164s:
        return True
    national = q.digits.lstrip("0")
    if len(national) >= MIN_NUMBER_DIGITS and any(national in phones.digits(n) for n in user.e164s):
        return True
    return bool(user.extension) and (user.extension or "").startswith(q.digits)


def search(users: Iterable[LiveUser], q: str, region: str, limit: int) -> list[LiveUser]:
    query = Query.parse(q, region)
    ranked: list[tuple[int, str, str, LiveUser]] = []
    for user in users:
        rank = _rank(user, query)
        if rank is not None:
            ranked.append((rank, fold(user.user.name), user.id, user))
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked[:limit]]


def entry(user: LiveUser, presence: str) -> dict[str, object]:
    """One user of a ``directory.result``."""
    return {"id": user.id, "name": user.user.name or None, "email": user.user.email, "extension": user.extension,
            "numbers": user.e164s, "presence": presence}


def find(users: Sequence[LiveUser], user_id: str) -> LiveUser | None:
    return next((u for u in users if u.id == user_id), None)
