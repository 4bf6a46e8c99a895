"""Translations: the .po catalogs in this package are the source; .mo files are compiled from them at start.

Messages are written in English in the code and templates (the `en` locale needs no catalog); Simplified
Chinese (`zh_CN`, the default) comes from translations/zh_CN/LC_MESSAGES/messages.po. The compiled
catalogs go to a directory named after the catalogs' content, so processes starting together share it and a
changed .po is never served stale; the source tree is never written to (the image runs read-only).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

SOURCE_DIR = Path(__file__).resolve().parent / "translations"
LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
DOMAIN = "messages"
LAYOUT = "v2"  # bump when the compiled layout changes, so no process reads an older one


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where it is shown."""
    return message


def catalogs(source: Path = SOURCE_DIR) -> list[Path]:
    return sorted(source.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))


def compile_catalogs(source: Path = SOURCE_DIR, target_root: Path | None = None) -> Path:
    """Compile every .po under `source` into .mo files; return the directory to load translations from."""
    sources = catalogs(source)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    target = (target_root or Path(tempfile.gettempdir())) / f"socorg-portal-i18n-{digest}-{LAYOUT}"
    for po_path in sources:
        locale = po_path.parts[-3]
        # Flask-Babel looks a locale up by Babel's full name (zh_CN is zh_Hans_CN), so write it there.
        mo_path = target / str(Locale.parse(locale)) / "LC_MESSAGES" / f"{DOMAIN}.mo"
        if mo_path.exists():
            continue
        mo_path.parent.mkdir(parents=True, exist_ok=True)
        with po_path.open("rb") as handle:
            catalog = read_po(handle, locale=locale)
        # Write beside and rename: a process reading concurrently sees the old file or the whole new one.
        fd, temporary = tempfile.mkstemp(dir=mo_path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            write_mo(handle, catalog)
        os.replace(temporary, mo_path)
    return target
