"""The embedded PostgreSQL after a ``kill -9``. pgserver counts the processes that use a data directory in
``PGDATA/.handle_pids.json`` and stops the server when the last of them leaves; a killed process never
leaves, so its pid stayed there and the server ran forever. Here, under pgserver's own lock:

- ``repair`` drops the pids of processes that are gone (or whose pid now belongs to a younger process), and
  a ``postmaster.pid`` whose pid is alive but is not this directory's postmaster (a pid reused after a
  reboot or a kill: pgserver would adopt the stranger, PostgreSQL would refuse to start);
- a watcher (``python -m hejcti.pgwatch PGDATA``, one per directory, in its own session) checks every
  ``INTERVAL_S`` seconds and stops the server with a fast shutdown once no user is left, then exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

INTERVAL_S = 2.0
HANDLES = ".handle_pids.json"
WATCH_LOCK = ".hejcti-watch.lock"


@contextlib.contextmanager
def server_lock() -> Iterator[None]:
    """pgserver's inter-process lock, the one it holds while it starts a server or counts its users."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")  # pgserver's platformdirs warns without it
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import PostgresServer
    with PostgresServer._lock:  # noqa: SLF001
        yield


def _user_alive(pid: int, listed_at: float) -> bool:
    """A listed pid still counts if its process runs and is older than the list's last write (a process
    born after it cannot have registered itself: its pid was reused)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= listed_at + 1.0
    except psutil.Error:
        return False


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of this directory's running postmaster, or None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        proc = psutil.Process(pid)
        return pid if proc.name() == "postgres" and str(pgdata) in proc.cmdline() else None
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _prune_users(pgdata: Path) -> list[int]:
    path = pgdata / HANDLES
    try:
        listed_at = path.stat().st_mtime
        pids = [int(p) for p in json.loads(path.read_text() or "[]")]
    except (OSError, ValueError, TypeError):
        return []
    live = [p for p in pids if _user_alive(p, listed_at)]
    if live != pids:
        path.write_text(json.dumps(live))
    return live


def _drop_foreign_pidfile(pgdata: Path) -> bool:
    """Remove ``postmaster.pid`` (and its socket lock) when its pid is alive but not our postmaster. A dead
    pid is left alone: PostgreSQL itself treats that lock file as stale."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return False
    if not psutil.pid_exists(pid) or postmaster_pid(pgdata) is not None:
        return False
    pidfile.unlink(missing_ok=True)
    if len(lines) > 4 and lines[3].strip() and lines[4].strip():
        sock_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(sock_lock.read_text().splitlines()[0]) == pid:
                sock_lock.unlink()
    return True


def repair(pgdata: Path) -> dict[str, int | bool]:
    """Call with ``server_lock()`` held. What it found: the users left, whether a foreign pid file went."""
    users = _prune_users(pgdata)
    return {"users": len(users), "foreign_pidfile": _drop_foreign_pidfile(pgdata)}


def _watch_lock(pgdata: Path) -> int | None:
    """An exclusive lock that lives as long as the watcher holds it, or None if another process holds it."""
    fd = os.open(pgdata / WATCH_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def ensure_watcher(pgdata: Path, interval_s: float = INTERVAL_S) -> None:
    """Start the directory's watcher unless one runs. Two racing starters may both spawn one; the second
    finds the lock taken and exits."""
    fd = _watch_lock(pgdata)
    if fd is None:
        return
    os.close(fd)  # closing releases it; the watcher takes it again
    # through a shell that puts it in the background and exits at once: the watcher is nobody's child to reap
    subprocess.run(["/bin/sh", "-c", 'exec "$0" "$@" &', sys.executable, "-m", "hejcti.pgwatch", str(pgdata),
                    str(interval_s)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True, check=False, timeout=10)


def watch(pgdata: Path, interval_s: float = INTERVAL_S) -> int:
    fd = _watch_lock(pgdata)
    if fd is None:
        return 0  # another watcher has it
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    while True:
        time.sleep(interval_s)
        if not (pgdata / "PG_VERSION").exists():
            return 0  # the directory is gone
        with server_lock():
            if _prune_users(pgdata):
                continue
            pid = postmaster_pid(pgdata)
            if pid is not None:
                os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown: roll back, checkpoint, exit
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).wait(30)
            return 0


if __name__ == "__main__":  # pragma: no cover - run as a subprocess by ensure_watcher
    sys.exit(watch(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else INTERVAL_S))
