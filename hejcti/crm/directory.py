"""``directory``: a plain contact list in a CSV file with the header ``id,name,company,phone,email,url``.

Phones may be written in any common form; each is parsed with phonenumbers in the account's region and
indexed by E.164. The file is read again when it changes. It needs no credentials, and it has no place to
write call records to, so ``log_call`` reports that plainly.
"""

from __future__ import annotations

import asyncio
import csv
import os
from datetime import UTC, datetime

from hejcti import phones
from hejcti.crm.base import (
    CallRecord,
    Contact,
    Credentials,
    CrmAdapter,
    CrmPermanentError,
    LoggedRecord,
    rank,
)

HEADER = ("id", "name", "company", "phone", "email", "url")


class DirectoryError(CrmPermanentError):
    kind = "directory"


def load(path: str, region: str) -> dict[str, list[Contact]]:
    """Read the CSV into an index E.164 → contacts. Raises ``DirectoryError`` with a one-line reason."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            missing = [h for h in HEADER if h not in (reader.fieldnames or [])]
            if missing:
                raise DirectoryError(f"{path}: header lacks {', '.join(missing)} (need {','.join(HEADER)})",
                                     crm="directory")
            mtime = datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
            index: dict[str, list[Contact]] = {}
            for row in reader:
                e164 = phones.normalize(row.get("phone") or "", region)
                if not e164 or not row.get("id"):
                    continue
                contact = Contact(
                    crm="directory",
                    kind="contact",
                    id=row["id"].strip(),
                    name=(row.get("name") or "").strip(),
                    company=(row.get("company") or "").strip() or None,
                    url=(row.get("url") or "").strip() or None,
                    modified_at=mtime,
                )
                index.setdefault(e164, []).append(contact)
            return index
    except OSError as e:
        raise DirectoryError(f"cannot read directory {path}: {e.strerror}", crm="directory") from e
    except (csv.Error, UnicodeDecodeError) as e:
        raise DirectoryError(f"{path} is not a readable CSV file: {e}", crm="directory") from e


class Adapter(CrmAdapter):
    kind = "directory"
    needs_credentials = False

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._index: dict[str, list[Contact]] = {}
        self._stamp: tuple[float, int] | None = None
        self._lock = asyncio.Lock()

    async def _current(self) -> dict[str, list[Contact]]:
        if not self.instance:
            raise DirectoryError("no CSV path configured (--crm-instance)", crm="directory")
        try:
            st = os.stat(self.instance)
        except OSError as e:
            raise DirectoryError(f"cannot read directory {self.instance}: {e.strerror}", crm="directory") from e
        stamp = (st.st_mtime, st.st_size)
        if stamp != self._stamp:
            async with self._lock:
                if stamp != self._stamp:
                    self._index = await asyncio.to_thread(load, self.instance, self.region)
                    self._stamp = stamp
        return self._index

    async def lookup(self, e164: str, creds: Credentials | None, *, crm_user: str | None = None) -> list[Contact]:
        index = await self._current()
        return rank(index.get(e164, []), crm_user)

    async def log_call(self, record: CallRecord, creds: Credentials | None) -> LoggedRecord:
        raise DirectoryError("a directory has no place for call records", crm="directory")

    async def append_note(self, record_id: str, text: str, creds: Credentials | None) -> None:
        raise DirectoryError("a directory has no place for call notes", crm="directory")
