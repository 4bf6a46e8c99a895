"""National identifier check characters (pure): USCC (GB 32100-2015), organization code (GB 11714),
resident ID number (GB 11643)."""

from __future__ import annotations

import unicodedata
from datetime import date

from shared.text import ascii_digits

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, Z, S, V
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
TYPE_DIGIT = {"social_group": "1", "social_service_agency": "2", "foundation": "3"}
CIVIL_AFFAIRS = "5"


def org_code_check(body: str) -> str:
    """GB 11714 check character of an 8-character organization-code body."""
    if len(body) != 8:
        raise ValueError("an organization code body has 8 characters")
    total = sum(w * _org_value(c) for w, c in zip(ORG_CODE_WEIGHTS, body))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def _org_value(char: str) -> int:
    if "0" <= char <= "9":
        return int(char)
    if "A" <= char <= "Z":
        return ord(char) - ord("A") + 10
    raise ValueError(f"{char!r} is not allowed in an organization code")


def uscc_check(first17: str) -> str:
    """GB 32100 check character over the first 17 characters."""
    if len(first17) != 17:
        raise ValueError("the USCC check covers 17 characters")
    total = sum(w * USCC_ALPHABET.index(c) for w, c in zip(USCC_WEIGHTS, first17))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def make_uscc(org_type: str, area_code: str, org_body: str) -> str:
    """Build a civil-affairs USCC: `5`, the type digit, the area code, the organization code, the check."""
    if len(area_code) != 6 or not ascii_digits(area_code):
        raise ValueError("the area code has 6 digits")
    first17 = CIVIL_AFFAIRS + TYPE_DIGIT[org_type] + area_code + org_body + org_code_check(org_body)
    return first17 + uscc_check(first17)


def uscc_as_typed(text: str) -> str:
    """A code as a person looking it up types or pastes it: full-width (a Chinese input method), lower case,
    with spaces around it. Only for finding a code; a code the registry writes is always upper case ASCII."""
    return unicodedata.normalize("NFKC", text).strip().upper()


def is_valid_uscc(code: str) -> bool:
    if not isinstance(code, str) or len(code) != 18 or any(c not in USCC_ALPHABET for c in code):
        return False
    org_code = code[8:17]
    try:
        if org_code_check(org_code[:8]) != org_code[8]:
            return False
    except ValueError:
        return False
    return uscc_check(code[:17]) == code[17]


def org_body_from_number(number: int) -> str:
    """The n-th organization-code body: 8 digits (GB 11714 bodies may also use letters; digits suffice)."""
    if not 0 < number < 10**8:
        raise ValueError("organization numbers run from 1 to 99,999,999")
    return f"{number:08d}"


def is_valid_id_number(id_number: str) -> bool:
    """GB 11643 resident ID: 17 digits and a check character."""
    if not isinstance(id_number, str) or len(id_number) != 18 or not ascii_digits(id_number[:17]):
        return False
    total = sum(w * int(d) for w, d in zip(ID_WEIGHTS, id_number[:17]))
    return ID_CHECK[total % 11] == id_number[17].upper()


def id_number_birth_date(id_number: str) -> date | None:
    """The birth date written in characters 7-14 of a resident ID number, or None if it is no date."""
    try:
        return date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
    except ValueError:
        return None


def uscc_shape_ok(text: str) -> bool:
    """Whether every character may appear in a USCC (a prefix search needs no check character)."""
    return bool(text) and all(c in USCC_ALPHABET for c in text)
