"""The embedded PostgreSQL after `hejcti serve` is killed with SIGKILL: the next `serve` on the same DATA_DIR
adopts (or restarts) it with the data intact, and a server whose users are all gone does not run forever."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import psutil
import pytest

from hejcti import pgwatch
from tests.e2e.test_cli import ROOT, hejcti, one_json


@pytest.fixture
def data_dir():
    """Outside pytest's tmp_path: as root, pgserver runs PostgreSQL as another user, and a concurrent pytest run
    makes /tmp/pytest-of-root private again (as tests/db.py does, for the same reason)."""
    path = Path(tempfile.mkdtemp(prefix="hejcti-restart-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def env(data_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJCTI_")}
    env.update(HEJCTI_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), HEJCTI_LOG_FORMAT="json")
    return env


@pytest.fixture
def pgdata(data_dir):
    """The cluster's directory; afterwards nothing of it runs on: no server, no watcher."""
    path = (data_dir / "pg").resolve()
    yield path
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        watcher = int((path / pgwatch.WATCH_LOCK).read_text().split()[0])
        if "hejcti.pgwatch" in " ".join(psutil.Process(watcher).cmdline()):
            os.kill(watcher, signal.SIGKILL)
    pid = pgwatch.postmaster_pid(path)
    if pid is not None:
        os.kill(pid, signal.SIGINT)
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(30)


def spawn(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(args, **kwargs)


async def start_serve(env: dict[str, str], procs: list[subprocess.Popen]) -> str:
    proc = spawn(sys.executable, "-m", "hejcti.cli", "serve", "--port", "0", "--json", env=env, cwd=ROOT,
                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    procs.append(proc)
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
    assert line, f"serve exited with {proc.wait()}"
    return json.loads(line)["url"]


def kill_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


async def gone(pid: int | None, timeout: float = 20) -> bool:
    if pid is None:
        return True
    try:
        await asyncio.to_thread(psutil.Process(pid).wait, timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


async def test_serve_after_sigkill_adopts_the_database_and_the_last_user_stops_it(env, pgdata):
    aid = one_json(await hejcti(env, "account", "create", "--name", "Kept", "--crm", "hubspot", "--json"))["account_id"]
    procs: list[subprocess.Popen] = []
    try:
        await start_serve(env, procs)
        postmaster = pgwatch.postmaster_pid(pgdata)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        url = await start_serve(env, procs)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ready"
        listed = one_json(await hejcti(env, "account", "list", "--json"))
        assert [a["account_id"] for a in listed["accounts"]] == [aid]
        assert json.loads((pgdata / pgwatch.HANDLES).read_text()) == [procs[1].pid]  # the killed one is struck
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(30) == 0
        # the last user left cleanly: no server of this directory runs on
        assert await gone(postmaster) and pgwatch.postmaster_pid(pgdata) is None
    finally:
        kill_all(procs)


async def test_a_server_whose_only_user_was_killed_is_stopped(env, pgdata):
    procs: list[subprocess.Popen] = []
    try:
        await start_serve(env, procs)
        postmaster = pgwatch.postmaster_pid(pgdata)
        assert postmaster is not None
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        assert await gone(postmaster), "the orphaned PostgreSQL still runs"
    finally:
        kill_all(procs)


async def test_a_pid_file_naming_a_stranger_is_not_adopted(env, pgdata):
    """After a reboot the old postmaster's pid may belong to another process: start a server anyway."""
    aid = one_json(await hejcti(env, "account", "create", "--name", "Kept", "--crm", "hubspot", "--json"))["account_id"]
    stranger = spawn("sleep", "60")
    try:
        # postmaster.pid as PostgreSQL writes it (pid, directory, start, port, socket dir, host, shared memory,
        # status), left behind by a server that died with its machine
        (pgdata / "postmaster.pid").write_text(f"{stranger.pid}\n{pgdata}\n1765000000\n5432\n{pgdata}\n\n"
                                               "  5432001         0\nready   \n")
        listed = one_json(await hejcti(env, "account", "list", "--json"))
        assert [a["account_id"] for a in listed["accounts"]] == [aid]
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()
