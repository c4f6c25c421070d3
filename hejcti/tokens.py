"""Tokens: 32 random bytes, shown once, stored as SHA-256, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hejcti.store import Store

#: the start of every token Hej CTI issues: never a "-" that a command line would read as a flag (about one
#: in 64 of the bare base64url strings began with one, and `hejcti listen --token -x…` then failed), and a
#: string that secret scanners and people can recognise
PREFIX = "hct_"


def new() -> str:
    """32 random bytes, base64url, behind ``PREFIX``."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def same(token: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(digest(token), stored_hash)


async def user_for_token(store: Store, token: str) -> Any | None:
    """The user row (``user_by_token``) whose token ``token`` is, compared as hashes in constant time; None for
    none. A database that does not answer raises ``DatabaseUnavailableError``."""
    row = await store.fetchrow("user_by_token", digest(token))
    if row is None or not same(token, bytes(row["token_hash"])):
        return None
    return row


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def webhook_token(secret_key: bytes, account_id: str, nonce: bytes) -> str:
    """The webhook token of an account: 32 pseudo-random bytes that whoever holds SECRET_KEY and the
    database can derive again (``simulate-call`` needs the URL), while the table keeps only its hash."""
    return b64url(hmac.new(secret_key, b"webhook:" + account_id.encode() + b":" + nonce, hashlib.sha256).digest())


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2; PKCE's code challenge)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def nonce() -> bytes:
    return secrets.token_bytes(16)
