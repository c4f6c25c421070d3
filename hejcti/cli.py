"""``hejcti``: the command line (CONTRACT §3). ``--json`` prints exactly one JSON object on stdout; errors go
to stderr as one line, with a non-zero exit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import asyncpg
from pydantic import ValidationError

from hejcti import __version__, db, logs
from hejcti.config import Settings
from hejcti.crm import KINDS
from hejcti.errors import HejctiError

log = logs.get("hejcti.cli")

#: settings a flag of the same name overrides (CONTRACT §2)
SETTING_FLAGS = ("database_url", "data_dir", "host", "port", "public_url", "secret_key", "log_format", "log_level",
                 "sipgate_allowed_ips", "sipgate_signature", "trusted_proxies", "lookup_deadline_ms",
                 "retention_days", "sipgate_api_url", "sipgate_login_url", "sipgate_client_id", "sipgate_client_secret",
                 "extension_ids", "metrics_allowed_ips",
                 *(f"{crm}_client_{part}" for crm in ("salesforce", "hubspot", "pipedrive", "zendesk")
                   for part in ("id", "secret")))


class Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr (CONTRACT §3), pointing at --help rather than printing it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"hejcti: {message} (see '{self.prog} --help')\n")


def _settings_group(p: argparse.ArgumentParser) -> None:
    """The settings as flags. SUPPRESS: one given before the command (``hejcti --port 8081 account list``) is not
    reset by the command's own parser, which only sets what is given after it."""
    g = p.add_argument_group("settings (each also HEJCTI_<NAME>; a flag wins)")
    for name in SETTING_FLAGS:  # --host/--port: where serve listens, and where simulate-call and listen connect
        g.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS, metavar=name.upper())


def _settings_parent() -> argparse.ArgumentParser:
    p = Parser(add_help=False)
    _settings_group(p)
    # SUPPRESS: a --json given before the command (``hejcti --json account list``) is not reset to False here
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print exactly one JSON object on stdout")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _settings_parent()
    parser = Parser(prog="hejcti", description="Hej CTI: sipgate calls to CRM screen-pops")
    parser.add_argument("--version", action="version", version=f"hejcti {__version__}")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    _settings_group(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", parents=[common], help="run the server")
    s.add_argument("--role", choices=("all", "web", "worker"), default="all")

    sub.add_parser("migrate", parents=[common], help="apply schema.sql (safe to run again)")

    acc = sub.add_parser("account", help="accounts").add_subparsers(dest="action", required=True, metavar="ACTION")
    c = acc.add_parser("create", parents=[common], help="create an account")
    c.add_argument("--name", required=True)
    c.add_argument("--crm", required=True, choices=KINDS, metavar="KIND", help=" ".join(KINDS))
    c.add_argument("--crm-instance", default=None)
    c.add_argument("--region", default="DE")
    c.add_argument("--no-log-calls", action="store_true")
    acc.add_parser("list", parents=[common])
    for action in ("show", "delete", "rotate-webhook"):
        a = acc.add_parser(action, parents=[common])
        a.add_argument("account_id", metavar="ID")
    cs = acc.add_parser("connect-sipgate", parents=[common], help="connect to sipgate with a personal access token")
    cs.add_argument("account_id", metavar="ID")
    cs.add_argument("--token-id", required=True, help="the token's id (token-…)")
    cs.add_argument("--token", required=True, help="the token itself")
    cw = acc.add_parser("configure-webhooks", parents=[common],
                        help="point sipgate's incoming and outgoing webhook URL at this account")
    cw.add_argument("account_id", metavar="ID")

    usr = sub.add_parser("user", help="users").add_subparsers(dest="action", required=True, metavar="ACTION")
    u = usr.add_parser("add", parents=[common])
    u.add_argument("--account", required=True)
    u.add_argument("--sipgate-user", required=True)
    u.add_argument("--crm-user", default=None)
    ul = usr.add_parser("list", parents=[common])
    ul.add_argument("--account", required=True)
    um = usr.add_parser("map", parents=[common])
    um.add_argument("user_id", metavar="USER_ID")
    um.add_argument("--crm-user", required=True)
    for action in ("token", "remove"):
        a = usr.add_parser(action, parents=[common])
        a.add_argument("user_id", metavar="USER_ID")
    us = usr.add_parser("sync", parents=[common], help="add every sipgate user of the account (tokens: user token)")
    us.add_argument("--account", required=True)

    sim = sub.add_parser("simulate-call", parents=[common], help="post one call's pushes to a running server")
    sim.add_argument("--account", required=True)
    sim.add_argument("--from", dest="number_from", required=True)
    sim.add_argument("--to", dest="number_to", required=True)
    sim.add_argument("--user", required=True)
    sim.add_argument("--answer-by", default=None)
    sim.add_argument("--hangup", default=None, metavar="CAUSE",
                     help="the hangup's cause, as sipgate sends it: normalClearing (the default when answered), "
                          "cancel (the default otherwise), busy, noAnswer, congestion, notFound, forwarded")
    sim.add_argument("--no-hangup", action="store_true",
                     help="post no hangup: the call stays ringing (or answered) until the server ends it")
    sim.add_argument("--url", default=None, metavar="BASE",
                     help="the server (default: PUBLIC_URL, or http://HOST:PORT)")
    sim.add_argument("--direction", choices=("in", "out"), default="in")
    sim.add_argument("--delay", type=float, default=1.0, help="seconds between the pushes (default 1)")

    li = sub.add_parser("listen", parents=[common],
                        help="hold a session as an extension does and print each event it receives")
    li.add_argument("--token", required=True, help="a user's token (hejcti user add / user token)")
    li.add_argument("--url", default=None, metavar="BASE", help="the server (default: PUBLIC_URL, or http://HOST:PORT)")

    ex = sub.add_parser("export", parents=[common], help="every stored datum of an account, as JSON")
    ex.add_argument("--account", required=True)

    dm = sub.add_parser("demo", parents=[common], help="one simulated call end to end")
    dm.add_argument("--keep", action="store_true",
                    help="then keep running, with a simulated sipgate, for a walk through the portal")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {k: getattr(args, k) for k in (*SETTING_FLAGS,) if getattr(args, k, None) is not None}
    return Settings(**overrides)


async def with_store(settings: Settings, fn: Callable[[Any], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run ``fn(admin)`` against the database: the shared one, or the embedded one (found running, or started)."""
    from hejcti.admin import Admin
    from hejcti.store import Store

    embedded = db.Embedded(settings.data_dir) if settings.embedded else None
    try:
        url = await asyncio.to_thread(db.database_url, settings, embedded)
        await db.migrate(url)
        pool = await db.create_pool(url, min_size=1, max_size=2)
        try:
            return await fn(Admin(Store(pool), settings))
        finally:
            await pool.close()
    finally:
        if embedded is not None:
            embedded.stop()


async def run_command(args: argparse.Namespace, settings: Settings) -> dict[str, Any] | None:
    cmd = args.command
    if cmd == "serve":
        from hejcti.server import serve

        def started(facts: dict[str, Any]) -> None:  # with --json: one object, once it listens
            if args.json:
                print(json.dumps(facts), flush=True)

        await serve(settings, role=args.role, on_started=started)
        return None
    if cmd == "demo":
        from hejcti.demo import demo

        result = await demo(settings, quiet=args.json, keep=args.keep)
        # without --json the demo has told its story already; with --keep its one JSON object came when it was ready
        return result if args.json and not args.keep else None
    if cmd == "migrate":
        return await with_store(settings, _migrated)
    if cmd == "account":
        if args.action == "create":
            return await with_store(settings, lambda a: a.create_account(
                name=args.name, crm=args.crm, crm_instance=args.crm_instance, region=args.region,
                log_calls=not args.no_log_calls))
        if args.action == "list":
            return await with_store(settings, lambda a: a.list_accounts())
        if args.action == "connect-sipgate":
            return await with_store(settings, lambda a: a.connect_sipgate(
                args.account_id, token_id=args.token_id, token=args.token))
        if args.action == "configure-webhooks":
            return await with_store(settings, lambda a: a.configure_webhooks(args.account_id))
        fn = {"show": "show_account", "delete": "delete_account", "rotate-webhook": "rotate_webhook"}[args.action]
        return await with_store(settings, lambda a: getattr(a, fn)(args.account_id))
    if cmd == "user":
        if args.action == "add":
            return await with_store(settings, lambda a: a.add_user(
                account_id=args.account, sipgate_user=args.sipgate_user, crm_user=args.crm_user))
        if args.action == "list":  # with live names and emails when the account is connected to sipgate
            return await with_store(settings, lambda a: a.list_users_live(args.account))
        if args.action == "sync":
            return await with_store(settings, lambda a: a.sync_users(args.account))
        if args.action == "map":
            return await with_store(settings, lambda a: a.map_user(args.user_id, args.crm_user))
        fn = {"token": "new_user_token", "remove": "remove_user"}[args.action]
        return await with_store(settings, lambda a: getattr(a, fn)(args.user_id))
    if cmd == "export":
        return await with_store(settings, lambda a: a.export(args.account))
    if cmd == "simulate-call":
        return await _simulate(args, settings)
    if cmd == "listen":
        from hejcti.listen import listen

        def out(line: str) -> None:
            print(line, flush=True)

        await listen(_client_base(args, settings), args.token, as_json=args.json, out=out,
                     note=lambda line: print(line, file=sys.stderr, flush=True))
        return None
    raise HejctiError(f"unknown command {cmd}")  # pragma: no cover - argparse refuses first


async def _migrated(admin: Any) -> dict[str, Any]:
    return {"migrated": True}


async def _simulate(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from hejcti import phones, simulate
    from hejcti.errors import BadRequestError

    async def token_and_region(admin: Any) -> dict[str, Any]:
        return {"token": await admin.webhook_token(args.account), "region": await admin.region(args.account),
                "users": [u["sipgate_user"] for u in (await admin.list_users(args.account))["users"]]}

    found = await with_store(settings, token_and_region)
    for flag, user in (("--user", args.user), ("--answer-by", args.answer_by)):
        if user is not None and user not in found["users"]:  # sipgate would push it; no session would see it
            has = f"its users: {', '.join(found['users'])}" if found["users"] else "it has no users yet"
            raise BadRequestError(f"{flag} {user}: account {args.account} has no sipgate user {user} ({has}); "
                                  f"add it with: hejcti user add --account {args.account} --sipgate-user {user}")
    numbers = []
    for flag, value in (("--from", args.number_from), ("--to", args.number_to)):
        if value.strip().lower() == "anonymous":
            numbers.append("anonymous")
            continue
        e164 = phones.normalize(value, found["region"])
        if e164 is None:
            raise BadRequestError(f"{flag} {value!r} is not a phone number")
        numbers.append(e164.lstrip("+"))
    base = _client_base(args, settings)
    events = simulate.bodies(number_from=numbers[0], number_to=numbers[1], user=args.user,
                             direction=args.direction, answer_by=args.answer_by, hangup=args.hangup,
                             end=not args.no_hangup)
    call_id = dict(p.split("=", 1) for p in events[0][1].split("&"))["callId"]
    try:
        results = await simulate.post_all(f"{base}/webhooks/sipgate/{found['token']}", events, delay=args.delay)
    except OSError as e:
        raise HejctiError(f"cannot reach the server at {base}: {e.strerror or e}") from e
    failed = [r for r in results if r["status"] != 200]
    out = {"call_id": call_id, "url": base, "events": [{"event": r["event"], "status": r["status"]} for r in results]}
    if failed:
        raise HejctiError(f"the server answered {failed[0]['status']} to {failed[0]['event']}: "
                          f"{failed[0]['body'].strip()[:200]}")
    return out


def _client_base(args: argparse.Namespace, settings: Settings) -> str:
    from hejcti.listen import default_base

    if args.url:
        return str(args.url).rstrip("/")
    return default_base(settings.host, settings.port, settings.public_url,
                        address_given=getattr(args, "host", None) is not None or getattr(args, "port", None) is not None)


def _human(result: dict[str, Any]) -> str:
    lines = []
    for key, value in result.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            for item in value:
                lines.append("  " + (json.dumps(item, ensure_ascii=False) if not isinstance(item, str) else item))
        elif isinstance(value, dict):
            lines.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as e:
        err = e.errors()[0]
        print(f"hejcti: configuration: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}", file=sys.stderr)
        return 2
    if args.command == "serve":
        logs.configure(settings.renderer, settings.log_level)
    else:
        logs.configure(settings.renderer, "warning" if settings.log_level in ("debug", "info") else settings.log_level)
    try:
        result = asyncio.run(run_command(args, settings))
    except KeyboardInterrupt:
        return 130
    except HejctiError as e:
        print(f"hejcti: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hejcti: {e.strerror or e}", file=sys.stderr)
        return 1
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as e:  # a wrong DATABASE_URL, role, db
        detail = " ".join(str(e).split()) or type(e).__name__
        print(f"hejcti: database: {detail}", file=sys.stderr)
        return 1
    if result is None:
        return 0
    if args.json:
        print(json.dumps(result, ensure_ascii=False, default=str))
    else:
        print(_human(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
