from datetime import UTC, datetime

import pytest

from hejcti.crm.base import Contact, rank
from hejcti.crm.directory import Adapter, DirectoryError, load


def write(tmp_path, text):
    p = tmp_path / "c.csv"
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_load_indexes_every_common_format(tmp_path):
    path = write(tmp_path, "id,name,company,phone,email,url\n"
                           "a,A,,030 12345678,,\nb,B,Co,+49 (0)30 1234-5678,,https://x/b\nc,C,,0049 30 12345678,,\n"
                           "d,D,,not a number,,\n,E,,030 12345678,,\n")
    index = load(path, "DE")
    assert [c.id for c in index["+493012345678"]] == ["a", "b", "c"]
    assert index["+493012345678"][1].company == "Co" and index["+493012345678"][1].url == "https://x/b"


def test_missing_header_is_a_clear_error(tmp_path):
    with pytest.raises(DirectoryError, match="header lacks"):
        load(write(tmp_path, "name,phone\nA,030 1\n"), "DE")


async def test_adapter_reads_the_file_again_when_it_changes(tmp_path):
    path = write(tmp_path, "id,name,company,phone,email,url\na,A,,030 12345678,,\n")
    adapter = Adapter(instance=path, region="DE", http=None)
    assert [c.id for c in await adapter.lookup("+493012345678", None)] == ["a"]
    write(tmp_path, "id,name,company,phone,email,url\nb,B,,030 12345678,,\nz,Z,,030 99999999,,\n")
    assert [c.id for c in await adapter.lookup("+493012345678", None)] == ["b"]
    assert await adapter.lookup("+4911111111", None) == []


async def test_missing_file_is_a_permanent_error(tmp_path):
    adapter = Adapter(instance=str(tmp_path / "nope.csv"), region="DE", http=None)
    with pytest.raises(DirectoryError, match="cannot read"):
        await adapter.lookup("+493012345678", None)


def test_rank_orders_exact_person_own_newest():
    t = lambda d: datetime(2026, 1, d, tzinfo=UTC)  # noqa: E731
    cs = [Contact("x", "account", "co", "Co", match="exact", modified_at=t(9)),
          Contact("x", "contact", "suffix", "S", match="suffix", modified_at=t(9)),
          Contact("x", "contact", "old", "O", match="exact", modified_at=t(1)),
          Contact("x", "contact", "new", "N", match="exact", modified_at=t(5)),
          Contact("x", "lead", "mine", "M", match="exact", owner_id="u1", modified_at=t(2))]
    assert [c.id for c in rank(cs, "u1")] == ["mine", "new", "old", "co", "suffix"]
