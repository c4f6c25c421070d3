"""The command line as a subprocess (CONTRACT §3): every command, its --json output, and its errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def env_for(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEJCTI_")}
    env.update(HEJCTI_DATABASE_URL=database_url, HEJCTI_SECRET_KEY="cli-secret", HEJCTI_DATA_DIR=str(tmp_path / "d"),
               HEJCTI_LOG_FORMAT="json", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


async def hejcti(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hejcti.cli", *args], env=env, capture_output=True,
                              text=True, timeout=60, cwd=ROOT)

    proc = await asyncio.to_thread(run)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    value = json.loads(lines[0])
    assert isinstance(value, dict)
    return value


@pytest.fixture
def env(database_url, tmp_path):
    return env_for(database_url, tmp_path)


async def test_migrate_is_safe_to_run_again(env):
    for _ in range(2):
        assert one_json(await hejcti(env, "migrate", "--json")) == {"migrated": True}


async def test_settings_flags_may_come_before_the_command(env):
    """`hejcti --port 8081 --json account create …`: a setting given before the command counts, as after it."""
    created = one_json(await hejcti(env, "--port", "18123", "--json", "account", "create", "--name", "Early",
                                    "--crm", "hubspot"))
    assert created["webhook_url"].startswith("http://127.0.0.1:18123/webhooks/sipgate/")
    shown = one_json(await hejcti(env, "--public-url", "https://cti.example", "account", "show",
                                  created["account_id"], "--json"))
    assert shown["webhook_url"].startswith("https://cti.example/webhooks/sipgate/")


async def test_json_may_come_before_the_command(env):
    created = one_json(await hejcti(env, "--json", "account", "create", "--name", "Early", "--crm", "hubspot"))
    listed = one_json(await hejcti(env, "--json", "account", "list"))
    assert [a["account_id"] for a in listed["accounts"]] == [created["account_id"]]
    plain = await hejcti(env, "account", "list")  # without it, the text form
    assert created["account_id"] in plain.stdout and not plain.stdout.lstrip().startswith("{")


async def test_account_lifecycle(env, tmp_path):
    created = one_json(await hejcti(env, "account", "create", "--name", "Acme", "--crm", "salesforce",
                                    "--crm-instance", "https://acme.my.salesforce.com", "--json"))
    assert set(created) == {"account_id", "webhook_url", "webhook_token", "admin_token"}
    assert created["webhook_url"].endswith("/webhooks/sipgate/" + created["webhook_token"])
    aid = created["account_id"]

    listed = one_json(await hejcti(env, "account", "list", "--json"))
    assert [a["account_id"] for a in listed["accounts"]] == [aid]
    assert listed["accounts"][0]["crm"] == "salesforce"

    shown = one_json(await hejcti(env, "account", "show", aid, "--json"))
    assert shown["account_id"] == aid and shown["log_calls"] is True and shown["region"] == "DE"
    assert shown["webhook_url"] == created["webhook_url"]

    rotated = one_json(await hejcti(env, "account", "rotate-webhook", aid, "--json"))
    assert rotated["webhook_token"] != created["webhook_token"]
    assert one_json(await hejcti(env, "account", "show", aid, "--json"))["webhook_url"] == rotated["webhook_url"]

    assert one_json(await hejcti(env, "account", "delete", aid, "--json")) == {"account_id": aid, "deleted": True}
    gone = await hejcti(env, "account", "show", aid, "--json", ok=False)
    assert gone.returncode != 0 and gone.stdout == ""
    assert gone.stderr.strip().count("\n") == 0 and aid in gone.stderr


async def test_users_and_tokens(env):
    aid = one_json(await hejcti(env, "account", "create", "--name", "A", "--crm", "hubspot", "--region", "at",
                                "--no-log-calls", "--json"))["account_id"]
    added = one_json(await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w0", "--crm-user",
                                  "77", "--json"))
    assert set(added) == {"user_id", "token"} and len(added["token"]) >= 43
    dup = await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w0", "--json", ok=False)
    assert dup.returncode != 0 and "w0" in dup.stderr

    users = one_json(await hejcti(env, "user", "list", "--account", aid, "--json"))["users"]
    assert [(u["sipgate_user"], u["crm_user"]) for u in users] == [("w0", "77")]
    assert "token" not in json.dumps(users)

    mapped = one_json(await hejcti(env, "user", "map", added["user_id"], "--crm-user", "99", "--json"))
    assert mapped["crm_user"] == "99"
    new = one_json(await hejcti(env, "user", "token", added["user_id"], "--json"))
    assert new["token"] != added["token"]

    exported = one_json(await hejcti(env, "export", "--account", aid, "--json"))
    assert exported["account"]["id"] == aid and exported["account"]["region"] == "AT"
    text = json.dumps(exported)
    assert added["token"] not in text and new["token"] not in text and "token_hash" not in text

    assert one_json(await hejcti(env, "user", "remove", added["user_id"], "--json"))["removed"] is True
    assert one_json(await hejcti(env, "user", "list", "--account", aid, "--json"))["users"] == []


@pytest.mark.parametrize("args, message", [
    (["account", "create", "--name", "X", "--crm", "directory"], "--crm-instance"),
    (["account", "create", "--name", "X", "--crm", "directory", "--crm-instance", "/nonexistent.csv"], "cannot read"),
    (["account", "create", "--name", "X", "--crm", "salesforce", "--crm-instance", "acme"], "https://"),
    (["account", "create", "--name", "X", "--crm", "hubspot", "--region", "XX"], "--region"),
    (["user", "add", "--account", "acc_missing", "--sipgate-user", "w0"], "acc_missing"),
    (["user", "map", "usr_missing", "--crm-user", "1"], "usr_missing"),
    (["account", "delete", "acc_missing"], "acc_missing"),
    (["export", "--account", "acc_missing"], "acc_missing"),
])
async def test_errors_are_one_line_on_stderr(env, args, message):
    proc = await hejcti(env, *args, "--json", ok=False)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr


@pytest.mark.parametrize("args, says", [
    (("account", "create", "--name", "X", "--crm", "notacrm"), "invalid choice: 'notacrm'"),
    (("account", "create", "--name", "X"), "the following arguments are required: --crm"),
    (("nosuchcommand",), "invalid choice: 'nosuchcommand'"),
])
async def test_usage_errors_exit_2_with_one_line(env, args, says):
    proc = await hejcti(env, *args, ok=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and says in proc.stderr and "--help" in proc.stderr


@pytest.mark.parametrize("wrong, says", [
    ("user", 'role "nobody" does not exist'),
    ("database", 'database "no_such_db" does not exist'),
    ("scheme", "DSN"),
])
async def test_a_wrong_database_url_is_one_line(env, database_url, wrong, says):
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(database_url)
    netloc = ("nobody@" + parts.netloc.rpartition("@")[2]) if wrong == "user" else parts.netloc
    path = "/no_such_db" if wrong == "database" else parts.path
    bad = "notaurl" if wrong == "scheme" else urlunsplit((parts.scheme, netloc, path, parts.query, ""))
    proc = await hejcti({**env, "HEJCTI_DATABASE_URL": bad}, "account", "list", "--json", ok=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("hejcti: database: ")
    assert says in proc.stderr and "Traceback" not in proc.stderr


async def test_serve_json_prints_one_object_once_it_listens(env):
    import signal
    import urllib.request

    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hejcti.cli", "serve", "--port", "0", "--json",
                                                env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        started = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert started["role"] == "all" and started["database"] == "shared" and started["port"] > 0
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(started["url"] + "/healthz", timeout=5).read())
        assert json.loads(body) == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(proc.stdout.read(), 30)
        await proc.wait()
    assert proc.returncode == 0 and rest.strip() == b""


async def test_directory_account_and_simulate_call(env, harness, tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("id,name,company,phone,email,url\nc1,Julia,ACME,0157 91234567,,\n")
    # the CLI writes to the same database the harness serves from; the webhook token is derived again from
    # SECRET_KEY, so the CLI and the server must share it
    env = {**env, "HEJCTI_SECRET_KEY": harness.settings.secret_key.get_secret_value()}
    aid = one_json(await hejcti(env, "account", "create", "--name", "D", "--crm", "directory", "--crm-instance",
                                str(csv), "--json"))["account_id"]
    token = one_json(await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w0", "--json"))["token"]
    rep = await harness.connect(token)
    sim = one_json(await hejcti(env, "simulate-call", "--account", aid, "--from", "0157 91234567", "--to",
                                "+49 211 1234567", "--user", "w0", "--answer-by", "w0", "--url", harness.base,
                                "--delay", "0.1", "--json"))
    assert [e["status"] for e in sim["events"]] == [200, 200, 200]
    ringing = await rep.expect("call.ringing", call_id=sim["call_id"])
    assert ringing["contacts"][0]["id"] == "c1"
    assert (await rep.expect("call.ended"))["cause"] == "normalClearing"


async def test_simulate_call_to_a_server_that_is_not_there(env):
    aid = one_json(await hejcti(env, "account", "create", "--name", "A", "--crm", "hubspot", "--json"))["account_id"]
    await hejcti(env, "user", "add", "--account", aid, "--sipgate-user", "w0", "--json")
    proc = await hejcti(env, "simulate-call", "--account", aid, "--from", "0157 91234567", "--to", "0211 1234567",
                        "--user", "w0", "--url", "http://127.0.0.1:9", "--json", ok=False)
    assert proc.returncode != 0 and "cannot reach" in proc.stderr and proc.stdout == ""


async def test_serve_with_a_shared_database_needs_a_secret_key(database_url, tmp_path):
    env = env_for(database_url, tmp_path)
    del env["HEJCTI_SECRET_KEY"]
    proc = await hejcti(env, "serve", "--port", "0", ok=False)
    assert proc.returncode == 1 and "HEJCTI_SECRET_KEY is required" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
