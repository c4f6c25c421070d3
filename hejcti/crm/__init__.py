"""CRM adapters. Each ``hejcti.crm.<kind>`` module exports ``Adapter``, a ``CrmAdapter`` subclass."""

from __future__ import annotations

import importlib

from hejcti.crm.base import CrmAdapter

KINDS = ("salesforce", "hubspot", "pipedrive", "zendesk", "sugarcrm", "suitecrm", "directory")


def adapter_class(kind: str) -> type[CrmAdapter]:
    if kind not in KINDS:
        raise ValueError(f"unknown CRM kind {kind!r}; one of {', '.join(KINDS)}")
    return importlib.import_module(f"hejcti.crm.{kind}").Adapter
