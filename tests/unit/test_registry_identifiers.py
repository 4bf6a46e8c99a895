"""National identifiers: USCC (GB 32100-2015), organization code (GB 11714), resident ID (GB 11643)."""

from __future__ import annotations

import pytest

from services.registry import identifiers as ids

# Codes published by their holders or in the standards (checked against the standard's arithmetic, not ours).
PUBLISHED_USCCS = [
    "91350100M000100Y43",  # the example of GB 32100-2015
    "914403001922038216",  # Huawei Technologies Co., Ltd.
    "91440300708461136T",  # Shenzhen Tencent Computer Systems Co., Ltd.
    "91110000802100433B",
    "911100001000044477",
]


@pytest.mark.parametrize("code", PUBLISHED_USCCS)
def test_published_usccs_are_valid(code):
    assert ids.is_valid_uscc(code)


@pytest.mark.parametrize("code", PUBLISHED_USCCS)
def test_any_single_changed_character_is_caught(code):
    # The weights are all prime to 31, so any one substituted character changes the check character.
    for position in range(18):
        for replacement in ids.USCC_ALPHABET:
            if replacement != code[position]:
                assert not ids.is_valid_uscc(code[:position] + replacement + code[position + 1:])


@pytest.mark.parametrize("code", [
    "",
    "91350100M000100Y4",  # 17 characters
    "91350100M000100Y433",  # 19
    "91350100M000100I43",  # I is not in the alphabet
    "91350100M000100O43",  # nor O
    "91350100M000100Z43",  # nor Z
    "91350100M000100S43",  # nor S
    "91350100m000100Y43",  # lower case
    None,
    12345,
])
def test_malformed_usccs_are_invalid(code):
    assert not ids.is_valid_uscc(code)


@pytest.mark.parametrize("body, check", [
    ("D2143569", "X"),  # the example of GB 11714
    ("00000001", "9"),  # 2 x 1 = 2; 11 - 2 = 9
    ("00000006", "X"),  # 2 x 6 = 12 = 1 mod 11; 11 - 1 = 10, written X
    ("00000000", "0"),  # 0; 11 - 0 = 11, written 0
    ("A0000000", "3"),  # A = 10; 3 x 10 = 30 = 8 mod 11; 11 - 8 = 3
])
def test_organization_code_check(body, check):
    assert ids.org_code_check(body) == check


@pytest.mark.parametrize("org_type, digit", [("social_group", "1"), ("social_service_agency", "2"),
                                             ("foundation", "3")])
def test_made_usccs_are_civil_affairs_codes_of_the_area(org_type, digit):
    for number in (1, 2, 9, 10, 12345678, 99_999_999):
        code = ids.make_uscc(org_type, "310115", ids.org_body_from_number(number))
        assert ids.is_valid_uscc(code)
        assert code.startswith("5" + digit + "310115")
        assert code[8:16] == f"{number:08d}"


def test_made_usccs_are_distinct_for_distinct_numbers():
    codes = {ids.make_uscc("foundation", "310115", ids.org_body_from_number(n)) for n in range(1, 2001)}
    assert len(codes) == 2000


@pytest.mark.parametrize("bad", [0, 10**8, -1])
def test_organization_numbers_are_bounded(bad):
    with pytest.raises(ValueError):
        ids.org_body_from_number(bad)


@pytest.mark.parametrize("number, valid", [
    ("11010519491231002X", True),  # the example of GB 11643
    ("11010519491231002x", True),  # a lower-case check character is the same character
    ("440524188001010014", True),  # another example of GB 11643
    ("110105194912310021", False),  # wrong check character
    ("11010519491231002", False),  # 17 characters
    ("11010519491231002X1", False),
    ("A1010519491231002X", False),
    ("", False),
    # Digits only 0-9: str.isdigit() takes these too (and int() refuses the superscript: it was a 500).
    ("1101051949123100２X", False),  # a full-width 2, which the check character would otherwise accept
    ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", False),  # Arabic-Indic digits
    ("²" * 17 + "X", False),  # superscript two
])
def test_resident_id_check_character(number, valid):
    assert ids.is_valid_id_number(number) is valid


def test_birth_date_of_an_id_number():
    assert str(ids.id_number_birth_date("11010519491231002X")) == "1949-12-31"
    assert ids.id_number_birth_date("110105194913310020") is None  # month 13


@pytest.mark.parametrize("text, ok", [("5", True), ("51310115", True), ("513101150000000", True), ("AI", False),
                                      ("", False), ("5a", False)])
def test_uscc_shape(text, ok):
    assert ids.uscc_shape_ok(text) is ok
