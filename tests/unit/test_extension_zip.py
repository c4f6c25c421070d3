"""``make extension``'s zip (tools/extension_zip.py): the Chrome Web Store refuses a manifest with "key", so the
zipped manifest has none, is valid JSON and asks for the same permissions; the repository's keeps its key."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_store_zip_has_no_key_and_the_same_permissions(tmp_path: Path) -> None:
    out = tmp_path / "hejcti-extension.zip"
    subprocess.run([sys.executable, "tools/extension_zip.py", str(out)], cwd=ROOT, check=True, capture_output=True)
    repo = json.loads((ROOT / "extension" / "manifest.json").read_text())
    with zipfile.ZipFile(out) as zf:
        zipped = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
    assert "key" in repo and "key" not in zipped
    assert {k: v for k, v in repo.items() if k != "key"} == zipped
    files = {p.relative_to(ROOT / "extension").as_posix() for p in (ROOT / "extension").rglob("*") if p.is_file()}
    assert names == files
