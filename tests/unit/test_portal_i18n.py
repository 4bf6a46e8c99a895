"""The portal's translations: every message has a Simplified Chinese translation with the same placeholders,
and the catalog compiles from the repository's .po at start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from services.portal import i18n
from shared.settings import Settings, SettingsError

PORTAL = Path(i18n.__file__).resolve().parent
PO = PORTAL / "translations" / "zh_CN" / "LC_MESSAGES" / "messages.po"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extracted_messages() -> set[str]:
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "N_": None, "ngettext": (1, 2)}
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(str(PORTAL), method_map,
                                                                                keywords=keywords):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_message_has_a_chinese_translation_with_the_same_placeholders():
    catalog = read_po(PO.open("rb"), locale="zh_CN")
    translations = {m.id: m.string for m in catalog if m.id}
    messages = extracted_messages()
    assert len(messages) > 300
    missing = sorted(m for m in messages if not translations.get(m))
    assert missing == []
    for message in messages:
        assert sorted(PLACEHOLDER.findall(message)) == sorted(PLACEHOLDER.findall(translations[message])), message


def test_catalog_compiles_from_the_po(tmp_path):
    target = i18n.compile_catalogs(target_root=tmp_path)
    mo = target / "zh_Hans_CN" / "LC_MESSAGES" / "messages.mo"
    catalog = read_mo(mo.open("rb"))
    assert catalog.get("Sign in").string == "登录"
    # Same content, same directory: a second start reuses it.
    assert i18n.compile_catalogs(target_root=tmp_path) == target


def test_portal_refuses_unsafe_production_settings():
    from services.portal.app import check_portal_settings

    base = dict(env="production", jwt_secret="j" * 40)
    with pytest.raises(SettingsError, match="PORTAL_SECRET_KEY"):
        check_portal_settings(Settings(**base))
    with pytest.raises(SettingsError, match="SOCORG_AUTH_MODE"):
        check_portal_settings(Settings(**base, portal_secret_key="k" * 40, auth_mode="dev"))
    with pytest.raises(SettingsError, match="SOCORG_AUTH_MODE"):
        check_portal_settings(Settings(auth_mode="saml"))
    check_portal_settings(Settings(**base, portal_secret_key="k" * 40, auth_mode="oidc"))
    check_portal_settings(Settings())  # development defaults are fine
