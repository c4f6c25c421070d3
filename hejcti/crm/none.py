"""``none``: no CRM chosen yet. An account made by an admin's first "Sign in with sipgate" has this kind until
the portal sets its CRM: its pops go out with no contacts (resolved, nobody found), it needs no credentials,
and it logs no calls (the account is made with ``log_calls`` off; a record asked of it anyway fails plainly).
"""

from __future__ import annotations

from hejcti.crm.base import CallRecord, Contact, Credentials, CrmAdapter, CrmPermanentError, LoggedRecord


class Adapter(CrmAdapter):
    kind = "none"
    needs_credentials = False

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        return []

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        raise CrmPermanentError("the account has no CRM yet; choose one in the portal", crm="none")

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        raise CrmPermanentError("the account has no CRM yet; choose one in the portal", crm="none")
