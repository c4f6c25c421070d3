"""The stored sipgate credential: AES-GCM under a key derived from SECRET_KEY, bound to its account."""

from __future__ import annotations

import pytest

from hejcti import crypto

SECRET = b"the-installation-secret"
PLAIN = b'{"token_id":"token-ABC123","token":"e68ead46-a7db-46cd-8a1a-44aed1e4e372"}'


def test_round_trip_and_no_plaintext_in_the_blob():
    blob = crypto.encrypt(SECRET, "acc_1", PLAIN)
    assert crypto.decrypt(SECRET, "acc_1", blob) == PLAIN
    assert blob[0] == crypto.VERSION
    assert b"e68ead46" not in blob and b"token-ABC123" not in blob


def test_each_encryption_has_its_own_nonce():
    assert crypto.encrypt(SECRET, "acc_1", PLAIN) != crypto.encrypt(SECRET, "acc_1", PLAIN)


def test_another_secret_key_fails():
    blob = crypto.encrypt(SECRET, "acc_1", PLAIN)
    with pytest.raises(crypto.CredentialDecryptError):
        crypto.decrypt(b"another-secret", "acc_1", blob)


def test_another_account_id_fails():
    blob = crypto.encrypt(SECRET, "acc_1", PLAIN)
    with pytest.raises(crypto.CredentialDecryptError):
        crypto.decrypt(SECRET, "acc_2", blob)


@pytest.mark.parametrize("position", [1, 13, -1])  # the nonce, the ciphertext, the tag
def test_tampered_blob_fails(position):
    blob = bytearray(crypto.encrypt(SECRET, "acc_1", PLAIN))
    blob[position] ^= 0x01
    with pytest.raises(crypto.CredentialDecryptError):
        crypto.decrypt(SECRET, "acc_1", bytes(blob))


@pytest.mark.parametrize("blob", [b"", b"\x01short", b"\x02" + bytes(40)])
def test_truncated_or_unknown_version_fails(blob):
    with pytest.raises(crypto.CredentialDecryptError):
        crypto.decrypt(SECRET, "acc_1", blob)
