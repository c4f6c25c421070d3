"""CONTRACT §2: every variable of its table has a flag of the same name that wins over the environment, the CRM
OAuth clients' (``<CRM>_CLIENT_ID``, ``<CRM>_CLIENT_SECRET``) too, given before the command or after it."""

from __future__ import annotations

import pytest

from hejcti.cli import build_parser, settings_from

CRMS = ("salesforce", "hubspot", "pipedrive", "zendesk")


@pytest.mark.parametrize("crm", CRMS)
@pytest.mark.parametrize("before", [True, False])
def test_a_crm_oauth_client_is_a_flag(crm, before, monkeypatch):
    monkeypatch.setenv(f"HEJCTI_{crm.upper()}_CLIENT_ID", "from-the-environment")
    flags = [f"--{crm}-client-id", "X", f"--{crm}-client-secret", "Y"]
    args = build_parser().parse_args([*flags, "account", "list"] if before else ["account", "list", *flags])
    settings = settings_from(args)
    assert getattr(settings, f"{crm}_client_id") == "X"
    assert getattr(settings, f"{crm}_client_secret").get_secret_value() == "Y"
