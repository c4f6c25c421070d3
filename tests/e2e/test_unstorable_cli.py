"""A CLI argument that cannot be stored (invalid UTF-8 in argv arrives as a lone surrogate) is one clear line on
stderr and exit 1: bad input, not "database unavailable", never a traceback. (WebSocket messages with such text
are refused by ``protocol.parse`` before they reach the database.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.e2e.test_cli import ROOT, env_for, hejcti, one_json


async def test_a_name_in_invalid_utf8_is_refused_in_one_line(database_url, tmp_path):
    env = env_for(database_url, tmp_path)
    args = [sys.executable, "-m", "hejcti.cli", "account", "create", "--name", b"Caf\xe9 Schmidt", "--crm", "hubspot"]
    proc = await asyncio.to_thread(subprocess.run, args, env=env, capture_output=True, timeout=60, cwd=ROOT)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1 and proc.stdout == b"", err
    assert len(err.strip().splitlines()) == 1 and err.startswith("hejcti: "), err
    assert "cannot be stored" in err and "unavailable" not in err and "Traceback" not in err
    assert "Schmidt" not in err  # the refused value is not repeated
    assert one_json(await hejcti(env, "account", "list", "--json")) == {"accounts": []}
