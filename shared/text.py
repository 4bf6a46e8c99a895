"""Checks on text from outside: parsed from JSON (the request parser, shared.blueprint, and the event decoder,
shared.events) or typed (digits).

JSON's grammar lets a string escape half a surrogate pair (`"\\ud800"`); Python's parser turns it into a str that
no UTF-8 encoder, so neither BSON nor Kafka's JSON, can carry. And a parser nests only so deep: a document
nested tens of thousands of levels raises RecursionError instead of a decoding error.
"""

from __future__ import annotations

import re
from typing import Any

LONE_SURROGATE = "a string holds an unpaired surrogate escape (\\ud800-\\udfff alone): it is no Unicode character"
TOO_DEEP = "arrays and objects nest too deeply (hundreds of levels)"
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # only a document with one of these needs looking into


class UnpairedSurrogate(ValueError):
    def __init__(self):
        super().__init__(LONE_SURROGATE)


def ascii_digits(text: str) -> bool:
    """Only 0-9: str.isdigit() also takes full-width (２), Arabic-Indic (٢) and superscript (²) digits, the last
    of which int() refuses."""
    return text.isascii() and text.isdigit()


def may_hold_surrogates(raw: bytes) -> bool:
    return SURROGATE_ESCAPE.search(raw) is not None


def check_text(value: Any) -> None:
    """Raise UnpairedSurrogate if a string (or key) anywhere in a parsed document is not Unicode text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UnpairedSurrogate() from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key)
            check_text(item)
    elif isinstance(value, list):
        for item in value:
            check_text(item)
