"""``--crm-instance`` through the command line (CONTRACT §3): the Zendesk forms, and SugarCRM/SuiteCRM
refusing an account without their site URL (one line on stderr, non-zero exit, nothing on stdout)."""

from __future__ import annotations

import pytest

from tests.e2e.test_cli import env_for, hejcti, one_json


@pytest.fixture
def env(database_url, tmp_path):
    return env_for(database_url, tmp_path)


@pytest.mark.parametrize("kind", ["sugarcrm", "suitecrm"])
async def test_sugar_and_suite_without_instance_fail_with_one_line(env, kind):
    proc = await hejcti(env, "account", "create", "--name", "X", "--crm", kind, "--json", ok=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert f"--crm {kind} needs --crm-instance URL" in proc.stderr
    assert one_json(await hejcti(env, "account", "list", "--json"))["accounts"] == []


async def test_zendesk_instance_forms(env):
    for given in ("acme", "acme.zendesk.com", "https://acme.zendesk.com"):
        aid = one_json(await hejcti(env, "account", "create", "--name", given, "--crm", "zendesk",
                                    "--crm-instance", given, "--json"))["account_id"]
        shown = one_json(await hejcti(env, "account", "show", aid, "--json"))
        assert shown["crm_instance"] == "https://acme.zendesk.com", given
