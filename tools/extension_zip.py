"""Zip extension/ for the Chrome Web Store (``make extension``): every file as it is, except that the zipped
manifest.json has no ``"key"``. The repository's manifest keeps the key, so that an unpacked extension has the
fixed id that EXTENSION_IDS defaults to; the store refuses a manifest with one and gives the extension an id of
its own, which the server's EXTENSION_IDS must list too (README, "The extension").

Usage: python tools/extension_zip.py [OUT.zip]   (default build/hejcti-extension.zip)
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "extension"


def build(out: Path, source: Path = SOURCE) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            name = path.relative_to(source).as_posix()
            if name == "manifest.json":
                manifest = json.loads(path.read_text(encoding="utf-8"))
                manifest.pop("key", None)
                zf.writestr(name, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            else:
                zf.write(path, name)
    tmp.replace(out)
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "hejcti-extension.zip"))
