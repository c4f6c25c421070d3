"""Encryption of the stored sipgate credential (CONTRACT §8): AES-256-GCM under a key derived from
SECRET_KEY with HKDF-SHA256, a random 96-bit nonce per encryption, and the account id as associated data,
so a credential copied into another account's row does not decrypt there.

Layout: ``version (1 byte) | nonce (12 bytes) | ciphertext with its 16-byte tag``."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hejcti.errors import HejctiError

VERSION = 1
_INFO = b"hejcti sipgate credential v1"
_NONCE = 12


class CredentialDecryptError(HejctiError):
    """A stored credential that does not decrypt: another SECRET_KEY, another account's row, or altered."""


def _key(secret_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key)


def _aad(account_id: str) -> bytes:
    return bytes([VERSION]) + b"account:" + account_id.encode()


def encrypt(secret_key: bytes, account_id: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return bytes([VERSION]) + nonce + AESGCM(_key(secret_key)).encrypt(nonce, plaintext, _aad(account_id))


def decrypt(secret_key: bytes, account_id: str, blob: bytes) -> bytes:
    if len(blob) < 1 + _NONCE + 16 or blob[0] != VERSION:
        raise CredentialDecryptError("the stored sipgate credential has an unknown format; connect sipgate again")
    nonce, body = blob[1:1 + _NONCE], blob[1 + _NONCE:]
    try:
        return AESGCM(_key(secret_key)).decrypt(nonce, body, _aad(account_id))
    except InvalidTag as e:
        raise CredentialDecryptError("the stored sipgate credential does not decrypt (another SECRET_KEY?); "
                                     "connect sipgate again") from e
