"""Tokens as a person handles them: pasted into a command line, an extension, a form."""

from __future__ import annotations

import base64

from hejcti import tokens


def test_a_token_is_32_random_bytes_that_never_reads_as_a_command_line_flag():
    made = {tokens.new() for _ in range(2000)}
    assert len(made) == 2000
    for t in made:
        assert t.startswith(tokens.PREFIX) and not t.startswith("-")
        assert len(base64.urlsafe_b64decode(t.removeprefix(tokens.PREFIX) + "=")) == 32


def test_a_token_is_compared_by_its_hash():
    t = tokens.new()
    assert tokens.same(t, tokens.digest(t))
    assert not tokens.same(t + "x", tokens.digest(t))
