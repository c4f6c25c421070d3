"""Settings (CONTRACT §2): environment variables with the prefix ``HEJCTI_``; a command-line flag wins.

Built once in ``main()`` and passed down; never an import-time global.
"""

from __future__ import annotations

import ipaddress
import secrets
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hejcti.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidrs(value: str | list[str] | None) -> tuple[Network, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    out = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as e:
            raise ValueError(f"not an IP address or CIDR: {item!r}") from e
    return tuple(out)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEJCTI_", extra="ignore")

    database_url: SecretStr | None = None
    data_dir: Path = Path(".hejcti")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str | None = None
    secret_key: SecretStr | None = None
    log_format: Literal["console", "json"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    sipgate_allowed_ips: str = ""
    sipgate_signature: Literal["enforce", "log", "off"] = "log"
    trusted_proxies: str = ""
    lookup_deadline_ms: int = Field(1500, ge=0)
    retention_days: int = Field(7, ge=1)
    sipgate_api_url: str = "https://api.sipgate.com/v2"
    sipgate_login_url: str = "https://login.sipgate.com/auth/realms/third-party/protocol/openid-connect"
    sipgate_client_id: str | None = None
    sipgate_client_secret: SecretStr | None = None
    # comma-separated browser extension ids that may receive sign-in tokens; default: the reference extension's
    extension_ids: str = "hnnlhefhhmhfapdfppcpbjkplolijhoc"
    # the OAuth clients through which extensions sign in to their CRM (CONTRACT §10, hejcti/crm_oauth.py); the
    # endpoints are the vendors' (a local fake in tests); Zendesk's are the tenant's own: {subdomain}
    salesforce_client_id: str | None = None
    salesforce_client_secret: SecretStr | None = None
    salesforce_authorize_url: str = "https://login.salesforce.com/services/oauth2/authorize"
    salesforce_token_url: str = "https://login.salesforce.com/services/oauth2/token"
    hubspot_client_id: str | None = None
    hubspot_client_secret: SecretStr | None = None
    hubspot_authorize_url: str = "https://app.hubspot.com/oauth/authorize"
    hubspot_token_url: str = "https://api.hubapi.com/oauth/v1/token"
    pipedrive_client_id: str | None = None
    pipedrive_client_secret: SecretStr | None = None
    pipedrive_authorize_url: str = "https://oauth.pipedrive.com/oauth/authorize"
    pipedrive_token_url: str = "https://oauth.pipedrive.com/oauth/token"
    zendesk_client_id: str | None = None
    zendesk_client_secret: SecretStr | None = None
    zendesk_authorize_url: str = "https://{subdomain}.zendesk.com/oauth/authorizations/new"
    zendesk_token_url: str = "https://{subdomain}.zendesk.com/oauth/tokens"

    # not in the contract's table: tuning an operator rarely touches
    workers: int = Field(16, ge=1)
    pool_size: int = Field(10, ge=2)
    auth_timeout_s: float = 10.0
    session_queue_limit: int = 1000
    resume_window_s: int = 300
    ring_timeout_s: int = 600
    talk_timeout_s: int = 12 * 3600
    reaper_interval_s: float = 15.0
    poll_interval_s: float = 2.0
    cache_ttl_s: float = Field(300.0, le=300.0)
    credentials_wait_s: float = 10.0
    sipgate_timeout_s: float = Field(5.0, gt=0)  # one request to sipgate, and a whole socket action (CONTRACT §5.1: 5 s)
    sipgate_cache_ttl_s: float = Field(60.0, ge=0, le=60.0)  # live user data, per account (CONTRACT §8)
    # incoming connections (CONTRACT §4): idle, slow or half-sent ones cannot hold the server
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(10.0, gt=0)
    keepalive_timeout_s: float = Field(75.0, gt=0)
    max_connections: int = Field(0, ge=0)  # 0: the open-file limit less what the process needs besides
    connection_log_interval_s: float = Field(10.0, gt=0)
    ingest_deadline_s: float = Field(1.5, gt=0)  # a webhook the database does not store in time: 503
    readyz_timeout_s: float = Field(1.0, gt=0)
    # each worker process writes its open sessions per user this often (the portal counts them across processes)
    presence_interval_s: float = Field(10.0, gt=0)
    # a CRM instance set through the portal may be on a private, loopback or link-local address (the CLI's always may)
    crm_allow_private_hosts: bool = False
    metrics_allowed_ips: str = "127.0.0.1/32,::1/128"  # empty: anyone

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v

    @field_validator("sipgate_allowed_ips", "trusted_proxies", "metrics_allowed_ips")
    @classmethod
    def _cidrs(cls, v: str) -> str:
        parse_cidrs(v)
        return v

    @field_validator("sipgate_api_url", "sipgate_login_url", "salesforce_authorize_url", "salesforce_token_url",
                     "hubspot_authorize_url", "hubspot_token_url", "pipedrive_authorize_url", "pipedrive_token_url",
                     "zendesk_authorize_url", "zendesk_token_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, not {v!r}")
        return v.rstrip("/")

    @property
    def extension_id_set(self) -> frozenset[str]:
        return frozenset(i.strip() for i in self.extension_ids.split(",") if i.strip())

    @property
    def allowed_networks(self) -> tuple[Network, ...]:
        return parse_cidrs(self.sipgate_allowed_ips)

    @property
    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_cidrs(self.trusted_proxies)

    @property
    def metrics_networks(self) -> tuple[Network, ...]:
        return parse_cidrs(self.metrics_allowed_ips)

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def renderer(self) -> str:
        if self.log_format:
            return self.log_format
        return "console" if sys.stderr.isatty() else "json"

    def resolved_secret_key(self) -> bytes:
        """The key that encrypts stored sipgate credentials. Generated into DATA_DIR in embedded mode."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        if not self.embedded:
            raise ConfigError("HEJCTI_SECRET_KEY is required with HEJCTI_DATABASE_URL")
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()
