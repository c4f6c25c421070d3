"""Accounts and users: what the CLI (and the demo) do to them. Tokens are shown once, stored as hashes."""

from __future__ import annotations

import os
from typing import Any

import phonenumbers

from hejcti import tokens
from hejcti.config import Settings
from hejcti.crm import KINDS
from hejcti.crm.directory import DirectoryError, load
from hejcti.errors import BadRequestError, NotFoundError
from hejcti.models import iso
from hejcti.sipgate import Credential, SipgateError, SipgateNotConnectedError
from hejcti.sipgate_live import LiveUser, SipgateAccounts, opened
from hejcti.store import Store


def webhook_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/webhooks/sipgate/{token}"


_SITE_URL = {"sugarcrm": "Sugar site", "suitecrm": "SuiteCRM site"}


def _check_instance(kind: str, instance: str | None, region: str) -> str | None:
    if instance is None or instance.strip() == "":
        if kind == "directory":
            raise BadRequestError("--crm directory needs --crm-instance PATH of a CSV file "
                                  "with the header id,name,company,phone,email,url")
        if kind in _SITE_URL:  # self-hosted or per-tenant sites: there is no default host to fall back on
            raise BadRequestError(f"--crm {kind} needs --crm-instance URL of the {_SITE_URL[kind]}, "
                                  f"e.g. --crm-instance https://crm.example.com")
        return None
    if kind == "directory":
        path = os.path.abspath(instance)
        try:
            load(path, region)
        except DirectoryError as e:
            raise BadRequestError(str(e)) from e
        return path
    if kind == "zendesk" and "://" not in instance:
        host = instance.strip().rstrip("/").lower()
        sub = host.removesuffix(".zendesk.com")
        if not sub or not sub.replace("-", "").isalnum():
            raise BadRequestError("--crm-instance for zendesk is a subdomain (acme), its host (acme.zendesk.com) "
                                  f"or a URL, not {instance!r}")
        return f"https://{sub}.zendesk.com"
    if not instance.startswith(("https://", "http://")):
        raise BadRequestError(f"--crm-instance for {kind} is a URL starting with https://, not {instance!r}")
    return instance.rstrip("/")


def _check_region(region: str) -> str:
    region = region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise BadRequestError(f"--region {region!r} is not an ISO country code phonenumbers knows")
    return region


def _account(row: Any) -> dict[str, Any]:
    return {"account_id": row["id"], "name": row["name"], "crm": row["crm_kind"],
            "crm_instance": row["crm_instance"], "region": row["region"], "log_calls": row["log_calls"],
            "users": row["users"], "created_at": iso(row["created_at"])}


def _user(row: Any) -> dict[str, Any]:
    return {"user_id": row["id"], "account_id": row["account_id"], "sipgate_user": row["sipgate_user"],
            "crm_user": row["crm_user"], "created_at": iso(row["created_at"])}


class Admin:
    def __init__(self, store: Store, settings: Settings, sipgate: SipgateAccounts | None = None) -> None:
        self.store = store
        self.settings = settings
        #: the process's sipgate side (the app's); without one, each call opens an HTTP session of its own
        self.sipgate = sipgate

    def _new_webhook(self, account_id: str) -> tuple[str, bytes]:
        """A new webhook token of the account and the nonce it is derived from (``tokens.webhook_token``)."""
        nonce = tokens.nonce()
        return tokens.webhook_token(self.settings.resolved_secret_key(), account_id, nonce), nonce

    async def _insert_account(self, *, name: str, crm: str, instance: str | None, region: str, log_calls: bool,
                              sipgate_account: str | None = None) -> tuple[str | None, str, str]:
        """A new account row with its webhook and admin tokens (stored as hashes): → (its id, or None when
        ``sipgate_account`` has an account already; the webhook token; the admin token)."""
        account_id = tokens.new_id("acc")
        webhook, nonce = self._new_webhook(account_id)
        admin = tokens.new()
        made = await self.store.fetchval("account_insert", account_id, name, crm, instance, region, log_calls,
                                         tokens.digest(webhook), nonce, tokens.digest(admin), sipgate_account)
        return made, webhook, admin

    async def create_account(self, *, name: str, crm: str, crm_instance: str | None = None, region: str = "DE",
                             log_calls: bool = True) -> dict[str, Any]:
        if not name.strip():
            raise BadRequestError("--name must not be empty")
        if crm not in KINDS:
            raise BadRequestError(f"--crm must be one of {' '.join(KINDS)}")
        region = _check_region(region)
        instance = _check_instance(crm, crm_instance, region)
        if crm == "directory":
            log_calls = False  # a CSV file has no place for call records
        account_id, webhook, admin = await self._insert_account(name=name.strip(), crm=crm, instance=instance,
                                                                region=region, log_calls=log_calls)
        return {"account_id": account_id, "webhook_url": webhook_url(self.settings, webhook),
                "webhook_token": webhook, "admin_token": admin}

    async def list_accounts(self) -> dict[str, Any]:
        return {"accounts": [_account(r) for r in await self.store.fetch("account_list")]}

    async def show_account(self, account_id: str) -> dict[str, Any]:
        row = await self.store.fetchrow("account_get", account_id)
        if row is None:
            raise NotFoundError(f"no account {account_id!r}")
        out = _account(row)
        out["webhook_url"] = webhook_url(self.settings, await self.webhook_token(account_id))
        return out

    async def delete_account(self, account_id: str) -> dict[str, Any]:
        if await self.store.fetchval("account_delete", account_id) is None:
            raise NotFoundError(f"no account {account_id!r}")
        return {"account_id": account_id, "deleted": True}

    async def rotate_webhook(self, account_id: str) -> dict[str, Any]:
        webhook, nonce = self._new_webhook(account_id)
        if await self.store.fetchval("account_rotate_webhook", account_id, tokens.digest(webhook), nonce) is None:
            raise NotFoundError(f"no account {account_id!r}")
        return {"account_id": account_id, "webhook_url": webhook_url(self.settings, webhook),
                "webhook_token": webhook}

    async def webhook_token(self, account_id: str) -> str:
        row = await self.store.fetchrow("account_webhook", account_id)
        if row is None:
            raise NotFoundError(f"no account {account_id!r}")
        token = tokens.webhook_token(self.settings.resolved_secret_key(), account_id, bytes(row["webhook_nonce"]))
        if not tokens.same(token, bytes(row["webhook_token_hash"])):
            raise BadRequestError("SECRET_KEY is not the one this account was created with")
        return token

    async def region(self, account_id: str) -> str:
        row = await self.store.fetchrow("account_webhook", account_id)
        if row is None:
            raise NotFoundError(f"no account {account_id!r}")
        return row["region"]

    async def add_user(self, *, account_id: str, sipgate_user: str, crm_user: str | None = None) -> dict[str, Any]:
        if await self.store.fetchrow("account_get", account_id) is None:
            raise NotFoundError(f"no account {account_id!r}")
        sipgate_user = sipgate_user.strip()
        if not sipgate_user or len(sipgate_user) > 64 or not sipgate_user.isalnum():
            raise BadRequestError(f"--sipgate-user is a sipgate user id like w0, not {sipgate_user!r}")
        import asyncpg

        token = tokens.new()
        user_id = tokens.new_id("usr")
        try:
            await self.store.fetchval("user_insert", user_id, account_id, sipgate_user, crm_user or None,
                                      tokens.digest(token))
        except asyncpg.UniqueViolationError as e:
            raise BadRequestError(f"account {account_id} already has sipgate user {sipgate_user}") from e
        return {"user_id": user_id, "token": token}

    async def list_users(self, account_id: str) -> dict[str, Any]:
        if await self.store.fetchrow("account_get", account_id) is None:
            raise NotFoundError(f"no account {account_id!r}")
        return {"account_id": account_id, "users": [_user(r) for r in await self.store.fetch("user_list", account_id)]}

    async def map_user(self, user_id: str, crm_user: str) -> dict[str, Any]:
        row = await self.store.fetchrow("user_map", user_id, crm_user or None)
        if row is None:
            raise NotFoundError(f"no user {user_id!r}")
        return _user(row)

    async def new_user_token(self, user_id: str) -> dict[str, Any]:
        token = tokens.new()
        if await self.store.fetchval("user_token", user_id, tokens.digest(token)) is None:
            raise NotFoundError(f"no user {user_id!r}")
        return {"user_id": user_id, "token": token}

    async def remove_user(self, user_id: str) -> dict[str, Any]:
        if await self.store.fetchval("user_remove", user_id) is None:
            raise NotFoundError(f"no user {user_id!r}")
        return {"user_id": user_id, "removed": True}

    async def export(self, account_id: str) -> dict[str, Any]:
        data = await self.store.fetchval("export_account", account_id)
        if not data or data.get("account") is None:
            raise NotFoundError(f"no account {account_id!r}")
        return data

    # -- sipgate (CONTRACT §3, §8): the CLI calls these, and the portal the same ----------------------------

    async def connect_sipgate(self, account_id: str, *, token_id: str, token: str) -> dict[str, Any]:
        """Connect the account with a personal access token: checked with sipgate, stored encrypted."""
        if await self.store.fetchrow("account_get", account_id) is None:
            raise NotFoundError(f"no account {account_id!r}")
        token_id, token = token_id.strip(), token.strip()
        if not token_id or not token or ":" in token_id or any(c.isspace() for c in token_id + token):
            raise BadRequestError("--token-id and --token are the id (token-…) and the token of a sipgate "
                                  "personal access token")
        credential = Credential.pat(token_id, token)
        async with opened(self.store, self.settings, self.sipgate) as sg:
            client = sg.new_client(credential, account_id)
            info = await client.userinfo()
            users = await client.users()
            if not info.master_sip_id:
                raise BadRequestError("sipgate's /authorization/userinfo names no account (masterSipId)")
            other = await self.store.fetchval("account_by_sipgate", info.master_sip_id)
            if other is not None and other != account_id:
                raise BadRequestError(f"sipgate account {info.master_sip_id} is connected to account {other} already")
            import asyncpg

            try:
                await sg.store_credential(account_id, info, credential)
            except asyncpg.UniqueViolationError as e:
                raise BadRequestError(f"sipgate account {info.master_sip_id} is connected to another account "
                                      "already") from e
        return {"account_id": account_id, "sipgate_account": info.master_sip_id, "users": len(users)}

    async def configure_webhooks(self, account_id: str) -> dict[str, Any]:
        """Point sipgate's incoming and outgoing webhook URL at the account's ``webhook_url``, keeping the rest."""
        url = webhook_url(self.settings, await self.webhook_token(account_id))
        async with opened(self.store, self.settings, self.sipgate) as sg:
            before, after = await (await sg.client(account_id)).configure_webhooks(url)
        return {"account_id": account_id, "before": before.raw(), "after": after.raw()}

    async def sync_users(self, account_id: str) -> dict[str, Any]:
        """Add every sipgate user of the account (ids only). Their tokens are not shown: ``user token``."""
        if await self.store.fetchrow("account_get", account_id) is None:
            raise NotFoundError(f"no account {account_id!r}")
        async with opened(self.store, self.settings, self.sipgate) as sg:
            remote = await (await sg.client(account_id)).users()
        existing = {r["sipgate_user"]: r["id"] for r in await self.store.fetch("user_list", account_id)}
        added, kept = [], []
        for user in remote:
            if user.id in existing:
                kept.append({"user_id": existing[user.id], "sipgate_user": user.id})
                continue
            made = await self.add_user(account_id=account_id, sipgate_user=user.id)
            added.append({"user_id": made["user_id"], "sipgate_user": user.id})
        return {"account_id": account_id, "added": added, "kept": kept}

    async def list_users_live(self, account_id: str) -> dict[str, Any]:
        """``list_users`` with each user's name, email and extension fetched live from sipgate (never stored).
        Without a connection, or while sipgate fails, the stored list alone, and ``sipgate`` says why
        (``sipgate_error`` in words)."""
        out = await self.list_users(account_id)
        live = await self._live_users(account_id, out)
        for user in out["users"]:
            found = live.get(user["sipgate_user"])
            user["name"] = (found.user.name or None) if found else None
            user["email"] = found.user.email if found else None
            user["extension"] = found.extension if found else None
        return out

    async def _live_users(self, account_id: str, out: dict[str, Any]) -> dict[str, LiveUser]:
        """The account's sipgate users by id; ``out["sipgate"]`` (and ``sipgate_error``) says how that went."""
        try:
            async with opened(self.store, self.settings, self.sipgate) as sg:
                live = {u.id: u for u in await sg.users(account_id)}
            out["sipgate"] = "connected"
            return live
        except SipgateNotConnectedError as e:
            out["sipgate"] = "not_connected"
            out["sipgate_error"] = str(e)
        except SipgateError as e:
            out["sipgate"] = "unavailable"
            out["sipgate_error"] = str(e)
        return {}

    # -- Sign in with sipgate (CONTRACT §8): the sign-in calls these; the portal and the CLI see the same rows ----

    async def account_for_sipgate(self, sipgate_account: str, region: str = "DE") -> tuple[str, bool]:
        """The account connected to sipgate account ``sipgate_account`` (``masterSipId``), made on the first
        sign-in of one of its admins: with no CRM yet (kind ``none``: finds nobody, logs no calls) until the
        portal sets one. Its webhook and admin tokens are made as ``create_account`` makes them and shown to
        nobody (the portal shows the webhook URL). → (account id, whether it was made now)."""
        for _ in range(2):  # made by a sign-in at the same moment: the second finds the first's
            found = await self.store.fetchval("account_by_sipgate", sipgate_account)
            if found is not None:
                return found, False
            made, _, _ = await self._insert_account(name=f"sipgate {sipgate_account}", crm="none", instance=None,
                                                    region=region, log_calls=False, sipgate_account=sipgate_account)
            if made is not None:
                return made, True
        raise NotFoundError(f"no account for sipgate account {sipgate_account!r}")  # pragma: no cover

    async def sign_in_user(self, account_id: str, sipgate_user: str) -> dict[str, Any]:
        """A user's sign-in: the user row is added if missing (ids only), and the user gets a new token, as
        ``user add`` and ``user token`` make them. One token per user: the new one ends the old one's sessions
        (4502). → ``{"user_id", "token", "added"}``."""
        for _ in range(2):  # added by a sign-in at the same moment: the second gives that row a new token
            user_id = await self.store.fetchval("user_by_sipgate", account_id, sipgate_user)
            if user_id is not None:
                return {**await self.new_user_token(user_id), "added": False}
            try:
                return {**await self.add_user(account_id=account_id, sipgate_user=sipgate_user), "added": True}
            except BadRequestError:
                if await self.store.fetchval("user_by_sipgate", account_id, sipgate_user) is None:
                    raise  # not a race: the id itself is refused
        raise NotFoundError(f"no user {sipgate_user!r} in account {account_id!r}")  # pragma: no cover

    # -- the portal (CONTRACT §9): what its pages need beyond the CLI's; read-only listings and settings --------

    async def check_admin_token(self, account_id: str, token: str) -> bool:
        """Whether ``token`` is the account's admin token (compared as hashes, in constant time)."""
        row = await self.store.fetchrow("account_admin_token", account_id.strip()) if account_id.strip() else None
        return row is not None and bool(token) and tokens.same(token, bytes(row["admin_token_hash"]))

    async def set_crm(self, account_id: str, *, crm: str, crm_instance: str | None = None,
                      log_calls: bool = True) -> dict[str, Any]:
        """The account's CRM, its instance and call logging, checked as ``account create`` checks them."""
        if crm not in KINDS:
            raise BadRequestError(f"--crm must be one of {' '.join(KINDS)}")
        instance = _check_instance(crm, crm_instance, await self.region(account_id))
        if crm == "directory":
            log_calls = False
        if await self.store.fetchval("account_set_crm", account_id, crm, instance, log_calls) is None:
            raise NotFoundError(f"no account {account_id!r}")
        return await self.show_account(account_id)

    async def sipgate_status(self, account_id: str) -> dict[str, Any]:
        """Whether the account is connected to sipgate, and whether sipgate's webhook settings (read live) point
        at its webhook URL: ``webhooks`` is ``here``, ``elsewhere`` or ``unknown`` (not connected, or sipgate
        did not answer)."""
        row = await self.store.fetchrow("sipgate_credential", account_id)
        if row is None:
            raise NotFoundError(f"no account {account_id!r}")
        out: dict[str, Any] = {"account_id": account_id, "sipgate_account": row["sipgate_account_id"],
                               "connected": row["sipgate_credential"] is not None and row["sipgate_rejected_at"] is None,
                               "rejected": row["sipgate_rejected_at"] is not None, "webhooks": "unknown"}
        if not out["connected"]:
            return out
        url = webhook_url(self.settings, await self.webhook_token(account_id))
        try:
            async with opened(self.store, self.settings, self.sipgate) as sg:
                current = await (await sg.client(account_id)).webhook_settings()
        except SipgateError:
            return out
        here = current.incoming_url == url and current.outgoing_url == url
        out["webhooks"] = "here" if here else "elsewhere"
        return out

    async def users_overview(self, account_id: str) -> dict[str, Any]:
        """The account's sipgate users fetched live (name, email, extension; never stored) joined with its users
        table: one row per sipgate user, enabled or not (``user_id`` None), then users sipgate no longer lists."""
        out = await self.list_users(account_id)
        live = await self._live_users(account_id, out)
        stored = {u["sipgate_user"]: u for u in out["users"]}
        rows: list[dict[str, Any]] = []
        for found in live.values():
            user = stored.pop(found.id, None)
            rows.append({"sipgate_user": found.id, "user_id": user["user_id"] if user else None,
                         "crm_user": user["crm_user"] if user else None, "name": found.user.name or None,
                         "email": found.user.email, "extension": found.extension, "in_sipgate": True})
        for user in stored.values():
            rows.append({**user, "name": None, "email": None, "extension": None,
                         "in_sipgate": out["sipgate"] != "connected"})
        return {"account_id": account_id, "sipgate": out["sipgate"], "users": rows}

    async def account_user(self, account_id: str, user_id: str) -> dict[str, Any]:
        """A user of this account; NotFoundError for another account's user as for none at all."""
        row = await self.store.fetchrow("user_get", user_id)
        if row is None or row["account_id"] != account_id:
            raise NotFoundError(f"no user {user_id!r} in account {account_id!r}")
        return _user(row)

    async def recent_calls(self, account_id: str, *, limit: int = 25, offset: int = 0) -> dict[str, Any]:
        """The account's last 100 calls, newest first, ``limit`` from ``offset``: each with its CRM record's
        state. Numbers as stored (E.164): a page masks them."""
        limit, offset = max(1, min(limit, 100)), max(0, min(offset, 100))
        rows = await self.store.fetch("portal_calls", account_id, min(limit, 100 - offset), offset)
        total = await self.store.fetchval("portal_calls_count", account_id)
        return {"account_id": account_id, "total": int(total or 0), "calls": [dict(r) for r in rows]}

    async def sipgate_names(self, account_id: str) -> dict[str, str]:
        """The names of the account's sipgate users by id, fetched live (the calls page names whom a call rang
        for and who answered); empty when sipgate is not connected or does not answer."""
        live = await self._live_users(account_id, {})
        return {uid: found.user.name for uid, found in live.items() if found.user.name}
