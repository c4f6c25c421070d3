"""sipgate's push format: signature check on the raw bytes, then the form body parsed into what we store.

Only ids are kept: the display names in ``user[]``/``user`` are read (to spot the voicemail) and dropped, and
so is ``answeringNumber`` (the user's own number, which neither the pop nor the record needs; CONTRACT §6).
What is kept must be storable as sent (CONTRACT §4): an id or verbatim value of at most 250 printable
characters, a number of ASCII digits; anything else is a 400 with a one-line reason, never a 503 from a
database that refuses the row.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from hejcti import phones
from hejcti.errors import BadRequestError
from hejcti.models import EVENTS

#: sipgate's one public key for push signatures (sipgate/pushapi-request-verifier fastagi.pub, the same key
#: inlined in sipgateio-node's signatureVerifier.ts).
SIPGATE_PUBLIC_KEY = b"""-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAvFdlnqRfO5TmqzjtsFVC
qPz+oW+poi3lXQFvMJJMEAtlU4MbX+yuIkgnC+Qt3AQWIK+oWSEQiybg+p39wEMl
16PZxEzf9gONQvTg1XhyHnwqYUFQj/AoxPKGYC3jmdjZ224SrESiTN3CdxoOc3vk
cXiQstYE7SxnksPtzfk0aIOkicim5/tAP9izNQ18/zmX3ChjK2k72gf5dDlq+qZ8
pRiHAPZ64TySH6cLQDhaoh6Nbq8FEG3usXXPClbUMh2DZaTMPafpd+LNuTngJ/y+
KoZasVuFfXAeBqGA6l5d4Uedfr99Z6qjwDrJ8sU4z2Do9bJrbuqP+mOXEebhSI1K
vi8trEfrIt8hnDBGsBaB9NEO3kYxvDT2/PhC9fNYFocjEpZNd7/mUqTJDYlpa4UC
NDQaU+ATdXG8/P5sGAegks6MQTu+qe9XTO0CV48eswDkz6g3UbLOwmrJK59SjD3J
yAZ52sluwyDKRWw/PPTt8BTQLjvkdbiLUlc4ehJ4b1X7D7diYWHDPeFL47cAvaXh
dXVrZDeBJYibvD1jRx4ES0KlfhwzNXBYUoM/Movg9zMM2PzyHHKS//xIjwUC/FJ6
/6eykno0Hy2B1ev6s3hdY6VkN2zd7Wf+EK4DxRliwsg1U99szFE3ewLfexF+Uag5
M+TfPtOUumI/NHMTvsRW9+ECAwEAAQ==
-----END PUBLIC KEY-----
"""

_KEY = serialization.load_pem_public_key(SIPGATE_PUBLIC_KEY)
assert isinstance(_KEY, rsa.RSAPublicKey)
#: the longest id or verbatim value kept (CONTRACT §4); sipgate's callIds are 76 characters (reference §2.6)
MAX_ID = 250
#: sipgate's number fields: E.164 digits without ``+``, or a non-number (``anonymous``, a SIP id)
NUMBERS = ("from", "to", "diversion", "answeringNumber")


def signature_valid(body: bytes, header: str | None, key: rsa.RSAPublicKey = _KEY) -> bool:
    """RSA PKCS#1 v1.5 with SHA-256 over the exact body bytes; the header is base64."""
    if not header:
        return False
    try:
        sig = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(sig, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Push:
    """A parsed push: what the store needs to keep it and answer it."""

    event: str
    call_id: str
    dedup: str
    data: dict[str, Any]


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequestError("body is not UTF-8") from e
    if "\x00" in text or "%00" in text:
        raise BadRequestError("body contains a NUL character")
    try:
        pairs = parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=False, max_num_fields=1000)
    except ValueError as e:
        raise BadRequestError(f"body is not a form: {e}") from e
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form


def _one(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def _many(form: dict[str, list[str]], key: str) -> list[str]:
    """``user[]`` arrives raw or percent-encoded (both decode to the same key); a plain ``user`` too."""
    return form.get(key + "[]") or []


def _bounded(key: str, value: str | None) -> str | None:
    if value is not None and len(value) > MAX_ID:
        raise BadRequestError(f"{key} is over {MAX_ID} characters")
    return value


def _storable(key: str, value: str | None) -> str | None:
    """An id or a value kept as sent: at most ``MAX_ID`` printable characters, else a 400 naming the field."""
    _bounded(key, value)
    if value is not None and not value.isprintable():
        raise BadRequestError(f"{key} holds a character that is not printable")
    return value


def _number(form: dict[str, list[str]], key: str) -> str | None:
    """A number field as sent. Digits of another script (Arabic-Indic, superscript, fullwidth) are refused:
    no sipgate number holds them, and read as digits they would pop and store a number nobody dialled.
    Anything else that is no E.164 number (``anonymous``, a SIP id, empty) is accepted as no number."""
    value = _bounded(key, _one(form, key))
    if phones.foreign_digits(value):
        raise BadRequestError(f"{key} holds digits other than ASCII 0-9")
    return value


def parse(body: bytes) -> Push:
    """Parse a push body. Raises ``BadRequestError`` with a one-line reason for what we cannot store."""
    form = _form(body)
    event = (_one(form, "event") or "").strip()
    if not event:
        raise BadRequestError("missing event")
    if event not in EVENTS:
        raise BadRequestError(f"unknown event {event[:40]!r}")
    call_id = (_storable("callId", _one(form, "callId")) or "").strip()  # checked as sent, then trimmed
    if not call_id:
        raise BadRequestError("missing callId")

    direction = _one(form, "direction")
    direction = direction if direction in ("in", "out") else None
    # answeringNumber, the user's own number, is checked like the others and then dropped (CONTRACT §6)
    raw_from, raw_to, diversion, _answering = (_number(form, key) for key in NUMBERS)
    frm, to = phones.from_sipgate(raw_from), phones.from_sipgate(raw_to)
    other_raw, number, own = (raw_to, to, frm) if direction == "out" else (raw_from, frm, to)
    data: dict[str, Any] = {
        "direction": direction,
        "number": number,
        "own_number": own,
        "anonymous": (other_raw or "").strip().lower() == "anonymous",
        "orig_call_id": _storable("origCallId", _one(form, "origCallId")) or None,
        "xcid": _storable("xcid", _one(form, "xcid")) or None,
        "diversion": phones.from_sipgate(diversion),
    }
    dedup = ""
    if event == "newCall":
        names = _many(form, "user")
        data["user_ids"] = [u for u in _many(form, "userId") if _storable("userId[]", u)]
        for full in _many(form, "fullUserId"):
            _storable("fullUserId[]", full)
        data["voicemail"] = bool(names) and names[0].strip().lower() == "voicemail"
    elif event == "answer":
        user = (_one(form, "user") or "").strip().lower()
        data["by"] = _storable("userId", _one(form, "userId")) or None
        _storable("fullUserId", _one(form, "fullUserId"))
        data["voicemail"] = user == "voicemail"
    elif event == "hangup":
        data["cause"] = _storable("cause", _one(form, "cause")) or None  # kept as sent (CONTRACT §4)
    elif event == "dtmf":
        data["dtmf"] = _storable("dtmf", _one(form, "dtmf")) or ""
        dedup = hashlib.sha256(body).hexdigest()[:32]
    return Push(event=event, call_id=call_id, dedup=dedup, data=data)
