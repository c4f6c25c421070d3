"""Per CRM: its fake, how it stores the caller's number, its ids, and where a record keeps owner, contact
and body. Shared by the adapter tests against the fakes and the end-to-end tests."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spec:
    kind: str
    ids: tuple[str, str, str]  # two callers' contacts and a stranger
    stored: str  # how the caller's number is written in this CRM (a form its search finds)
    owner: str
    company_id: str
    contact_kind: str
    owner_of: Callable[[dict[str, Any]], Any]
    contact_of: Callable[[dict[str, Any]], Any]
    body_of: Callable[[Any, str], str]  # (fake state, record id) → the record's text, notes included
    url_part: str

    @property
    def fake(self) -> Any:
        return importlib.import_module(f"tests.fakes.{self.kind}")


def _hs_body(state: Any, rid: str) -> str:
    return state.calls[rid]["properties"].get("hs_call_body", "")


def _sf_body(state: Any, rid: str) -> str:
    return state.tasks[rid].get("Description", "")


def _pd_body(state: Any, rid: str) -> str:
    return state.logs[rid].get("note", "") + "".join(text for _, text in state.notes)


def _zd_body(state: Any, rid: str) -> str:
    return "\n".join(c["body"] for c in state.tickets[int(rid)]["comments"])


def _sugar_body(state: Any, rid: str) -> str:
    return state.calls[rid].get("description", "")


def _suite_body(state: Any, rid: str) -> str:
    return state.calls[rid]["attributes"].get("description", "")


SPECS = [
    Spec("hubspot", ("51", "52", "53"), "0157 91234567", "83210754", "9001", "contact",
         lambda r: r["properties"].get("hubspot_owner_id"), lambda r: r["associations"][0]["to"]["id"], _hs_body,
         "/record/0-1/"),
    Spec("salesforce", ("003Dn00000Qm1fTIAR", "003Dn00000Qm1fTIAS", "003Dn00000Qm1fTIAT"), "0157 91234567",
         "005Dn000003XyZaIAK", "001Dn00000LkP2wIAF", "contact", lambda r: r.get("OwnerId"), lambda r: r.get("WhoId"),
         _sf_body, "/003Dn00000Qm1fT"),
    Spec("pipedrive", ("42", "43", "44"), "+49 157 91234567", "1234567", "7", "person",
         lambda r: str(r.get("user_id")), lambda r: str(r.get("person_id")), _pd_body, "/person/"),
    Spec("zendesk", ("35436", "35437", "35438"), "+49 (0)157 9123 4567", "9873843", "57542", "user",
         lambda r: str(r.get("assignee_id")), lambda r: str(r.get("requester_id")), _zd_body, "/agent/users/"),
    Spec("sugarcrm", ("f3c8e4a2-1", "f3c8e4a2-2", "f3c8e4a2-3"), "+49 157 9123 4567", "seed_sally_id",
         "9a1e6d4c-1", "contact", lambda r: r.get("assigned_user_id"), lambda r: r.get("parent_id"), _sugar_body,
         "/#Contacts/"),
    Spec("suitecrm", ("7b0f6a2e-1", "7b0f6a2e-2", "7b0f6a2e-3"), "+49 157 91234567", "1", "4d5c9a0e-1",
         "contact", lambda r: r.get("assigned_user_id"), lambda r: r.get("parent_id"), _suite_body,
         "action=DetailView&record="),
]
BY_KIND = {s.kind: s for s in SPECS}
