"""aioresponses 0.7.9 builds ``ClientResponse`` without the ``stream_writer`` argument that aiohttp 3.14
requires (``TypeError: ClientResponse.__init__() missing 1 required keyword-only argument: 'stream_writer'``;
upstream issue pnuckowski/aioresponses#289, fix proposed in PR #288, unreleased). aiohttp 3.14 is a security
release, so we keep it and give aioresponses a response class that fills the argument in.
``tests/unit/test_aioresponses_shim.py`` fails once a fixed aioresponses makes this shim unnecessary.
"""

from __future__ import annotations

from typing import Any

import aioresponses.core
from aiohttp import ClientResponse


class _NoWriter:
    output_size = 0


class ShimmedClientResponse(ClientResponse):
    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoWriter())
        super().__init__(method, url, **kwargs)


ORIGINAL = aioresponses.core.ClientResponse


def install() -> None:
    aioresponses.core.ClientResponse = ShimmedClientResponse  # type: ignore[misc]
