"""Phone numbers: parsing sipgate's wire format, variants for CRM searches, verification, masking.

Pure functions, no I/O. E.164 strings here always carry the leading ``+``.

A digit of a phone number is an ASCII ``0``-``9`` and nothing else (a regex ``[0-9]``): ``\\d``,
``str.isdigit`` and ``str.isnumeric`` also take Arabic-Indic, fullwidth or superscript digits, which sipgate
never sends and no CRM search or dialler reads as a number. Masking for logs counts every digit, any script.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberFormat

Match = Literal["exact", "suffix"]
_NON_DIGITS = re.compile(r"[^0-9]+")
_SIPGATE = re.compile(r"\+?([0-9]{3,15})")
_MIN_SUFFIX = 7


def digits(value: str) -> str:
    """The ASCII digits of ``value``, nothing else."""
    return _NON_DIGITS.sub("", value or "")


def foreign_digits(value: str | None) -> bool:
    """Whether ``value`` holds a digit (any numeric character) other than ASCII ``0``-``9``."""
    return bool(value) and not value.isascii() and any(c.isnumeric() for c in value if not c.isascii())


class _AsAscii(dict[int, str]):
    """A ``str.translate`` table: every numeric character to an ASCII digit (its own value where it has one),
    every other character kept (a ``LookupError`` keeps it). Filled as characters are met."""

    def __missing__(self, codepoint: int) -> str:
        char = chr(codepoint)
        if not char.isnumeric():
            raise KeyError(codepoint)
        self[codepoint] = str(unicodedata.digit(char, 0))
        return self[codepoint]


_AS_ASCII = _AsAscii()


def ascii_digits(text: str) -> str:
    """``text`` of the same length with every digit, of any script, written as an ASCII one: what masking
    looks at, so that ``٤٩١٥٧…`` or ``⁴⁹¹⁵⁷…`` in a log line is masked like ``49157…``."""
    return text if text.isascii() else text.translate(_AS_ASCII)


def from_sipgate(value: str | None) -> str | None:
    """sipgate sends E.164 digits without ``+``, or ``anonymous``. Anything else is no number."""
    m = _SIPGATE.fullmatch(value.strip()) if value else None
    return "+" + m.group(1) if m else None


@lru_cache(maxsize=65536)
def normalize(value: str, region: str) -> str | None:
    """Any common written form (national, international, 00-prefixed, formatted) to E.164, or None."""
    if not value:
        return None
    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        parsed = phonenumbers.parse(raw, region.upper())
    except NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed) or len(phonenumbers.national_significant_number(parsed)) < 5:
        return None
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def _valid_elsewhere(stored: str, region: str) -> bool:
    """The stored form is a whole number of its own: written with its country code (``+``, ``00``) or its
    area code (the region's trunk prefix, ``0`` in Germany), and valid. Digits are compared only where it is
    not: a local number without its area code, a bare extension (crm-apis §0.1)."""
    raw = stored.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    meta = PhoneMetadata.metadata_for_region(region.upper())
    trunk = (meta.national_prefix if meta is not None else None) or None
    if not raw.startswith("+") and not (trunk and digits(raw).startswith(trunk)):
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(raw, region.upper()))
    except NumberParseException:
        return False


def _parse(e164: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(e164, None)
    except NumberParseException:
        return None


@lru_cache(maxsize=65536)
def display(e164: str | None, region: str) -> str | None:
    """The number as a person in the account's region writes it: national format at home, else international."""
    if not e164:
        return None
    parsed = _parse(e164)
    if parsed is None:
        return e164
    home = phonenumbers.country_code_for_region(region.upper())
    fmt = PhoneNumberFormat.NATIONAL if parsed.country_code == home else PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(parsed, fmt)


@lru_cache(maxsize=16384)
def variants(e164: str, region: str) -> tuple[str, ...]:
    """The forms a CRM may have stored the number in, most specific first, without duplicates.

    ``+493012345678``, ``493012345678``, ``00493012345678``, ``03012345678``, ``3012345678`` and the
    formatted forms (``+49 30 12345678``, ``030 12345678``; ``(513) 555-7611`` for NANP numbers).
    """
    parsed = _parse(e164)
    plain = e164.lstrip("+")
    out = [e164, plain, "00" + plain]
    if parsed is not None:
        nsn = phonenumbers.national_significant_number(parsed)
        national = phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
        out += [
            digits(national),
            nsn,
            phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL),
            national,
        ]
        if parsed.country_code == 1 and len(nsn) == 10:
            out += [f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}", f"{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}"]
    seen: dict[str, None] = {}
    for v in out:
        if v and v not in seen:
            seen[v] = None
    return tuple(seen)


def national_significant(e164: str) -> str:
    parsed = _parse(e164)
    return phonenumbers.national_significant_number(parsed) if parsed else e164.lstrip("+")


def match(stored: str | None, e164: str, region: str) -> Match | None:
    """Verify a CRM's stored phone against the caller: ``exact`` (same E.164), ``suffix`` (same last
    national-significant digits, at least seven), or None."""
    if not stored:
        return None
    if normalize(stored, region) == e164:
        return "exact"
    if _valid_elsewhere(stored, region):
        return None  # a real number of its own (say +43 15791234567 for +49 1579 1234567): not the caller
    nsn = national_significant(e164)
    got = digits(stored)
    if len(nsn) >= _MIN_SUFFIX and len(got) >= _MIN_SUFFIX and got.endswith(nsn):
        return "exact" if got in (e164.lstrip("+"), "00" + e164.lstrip("+"), nsn, "0" + nsn) else "suffix"
    tail = min(len(nsn), len(got))
    if tail >= _MIN_SUFFIX and got[-tail:] == nsn[-tail:] and len(got) < len(nsn):
        return "suffix"
    return None


def best_match(stored: list[str | None], e164: str, region: str) -> Match | None:
    found: Match | None = None
    for value in stored:
        m = match(value, e164, region)
        if m == "exact":
            return m
        found = found or m
    return found


def mask(value: object) -> str:
    """For logs: every digit but the last three replaced, so an operator can tell calls apart."""
    text = str(value) if value is not None else ""
    d = digits(ascii_digits(text))
    if len(d) < 4:
        return "***" if d else text
    return "…" + d[-3:]
