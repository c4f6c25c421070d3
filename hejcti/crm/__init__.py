"""CRM adapters. Each ``hejcti.crm.<kind>`` module exports ``Adapter``, a ``CrmAdapter`` subclass."""

from __future__ import annotations

import importlib

from hejcti.crm.base import CrmAdapter

KINDS = ("salesforce", "hubspot", "pipedrive", "zendesk", "sugarcrm", "suitecrm", "directory")
#: the kind of an account whose CRM is not chosen yet (made by a sign-in with sipgate): finds nobody, logs nothing
NO_CRM = "none"


def adapter_class(kind: str) -> type[CrmAdapter]:
    if kind not in KINDS and kind != NO_CRM:
        raise ValueError(f"unknown CRM kind {kind!r}; one of {', '.join(KINDS)}")
    return importlib.import_module(f"hejcti.crm.{kind}").Adapter
