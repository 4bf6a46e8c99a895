"""The services' flask-smorest Blueprint: flask-smorest's own, with a request parser that reads JSON bodies
as RFC 8259 allows and says what is wrong with one it cannot read.

- A leading UTF-8 byte order mark is ignored (RFC 8259, section 8.1, allows it): Windows editors write one
  at the start of a saved file, so `curl --data-binary @application.json` of a file saved in Notepad was
  refused as "not valid JSON".
- A body that is not JSON is a 400 whose detail names the problem and where it is (`Expecting ',' delimiter
  at line 3, column 5`), or that the body is not UTF-8 (a client sending GBK, for instance).
- A string with an unpaired surrogate escape (`"\\ud800"`: JSON's grammar allows it, Unicode has no such
  character) is a 400 too: no database or broker can store it, and it reached the insert as a 500. So is
  a body nested deeper than the parser goes (a 500 too, before).
"""

from __future__ import annotations

import json

import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser, abort, is_json_request

from shared.text import LONE_SURROGATE, TOO_DEEP, UnpairedSurrogate, check_text, may_hold_surrogates

NOT_UTF8 = "the body is not UTF-8 text (JSON is exchanged in UTF-8, RFC 8259)"


def invalid_json_message(error: Exception) -> str:
    """What is wrong with a body webargs could not read as JSON, in words."""
    if isinstance(error, UnicodeDecodeError) or (isinstance(error, json.JSONDecodeError)
                                                 and error.msg.startswith("Bytes decoding error")):
        return NOT_UTF8
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno}, column {error.colno}"
    if isinstance(error, UnpairedSurrogate):
        return LONE_SURROGATE
    if isinstance(error, RecursionError):
        return TOO_DEEP
    return str(error)


class JsonBodyParser(FlaskParser):
    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        body = req.get_data(cache=True)
        try:
            # utf-8-sig: UTF-8, without the byte order mark if there is one.
            parsed = core.parse_json(body, encoding="utf-8-sig")
            if may_hold_surrogates(body):
                check_text(parsed)
        except (UnpairedSurrogate, RecursionError) as exc:
            self._handle_invalid_json_error(exc, req)
        return parsed

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        abort(400, exc=error, messages={"json": [invalid_json_message(error)]})


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonBodyParser()
