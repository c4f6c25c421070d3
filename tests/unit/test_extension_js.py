"""The extension's pure modules (extension/*.js) under node's built-in test runner: tests/js/*.test.mjs, no
npm packages. Skipped with one line when node is not installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("node") is None, reason="the extension's JavaScript tests need node")
def test_extension_javascript() -> None:
    run = subprocess.run(["node", "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=100,
                         env={**os.environ, "NODE_NO_WARNINGS": "1"})
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
