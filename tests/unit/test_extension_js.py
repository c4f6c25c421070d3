"""The extension's pure modules (extension/*.js) under node's built-in test runner: tests/js/*.test.mjs, no
npm packages. Skipped with one line when node is not installed; with ``HEJCTI_BROWSER_TESTS=require`` (the one
switch for all the extension's tests, browser and node; what ``.ci/run`` sets) a missing node fails instead.

Node 18 (Debian bookworm's ``nodejs``) and later: tests/js/extension-modules.mjs tells an older node that the
extension's .js files are ES modules, which node 20.19+/22.12+ would detect on its own."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOW = "the extension's JavaScript tests need node (Debian: apt-get install nodejs)"


def node_or_skip(environ: Mapping[str, str] = os.environ) -> str:
    """node's path; a skip without it, or a failure when the extension's tests are required."""
    node = shutil.which("node")
    if node is None:
        if environ.get("HEJCTI_BROWSER_TESTS") == "require":
            pytest.fail(f"HEJCTI_BROWSER_TESTS=require, but there is no node: {HOW}")
        pytest.skip(HOW)
    return node


def test_a_missing_node_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="no node"):
        node_or_skip({"HEJCTI_BROWSER_TESTS": "require"})
    with pytest.raises(pytest.skip.Exception):
        node_or_skip({})


def test_extension_javascript() -> None:
    node = node_or_skip()
    run = subprocess.run([node, "--import", "./tests/js/extension-modules.mjs", "--test", "tests/js/"], cwd=ROOT,
                         capture_output=True, text=True, timeout=100, env={**os.environ, "NODE_NO_WARNINGS": "1"})
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
