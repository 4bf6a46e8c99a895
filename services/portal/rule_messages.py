"""The services' rule messages in the user's language: the registry's to applicants, the evaluation's to
reviewers scoring. Pure.

The services answer in English (their problem documents serve programs and logs too), and the portal shows
each broken rule beside its field. A fixed message is translated by the catalog as it is (`FIXED` lists
them, for extraction); a message that carries values (a word, a number, a date) is matched here and shown
as its template, translated, with those values. A message not known here is shown as the service wrote it.

tests/unit/test_portal_rule_messages.py makes the services' domain code produce every message and checks
that each is known here, so a rule reworded there cannot fall back to English unnoticed.
"""

from __future__ import annotations

import re

from services.portal.i18n import N_

FIXED = (
    N_("digits 0-9 and X only, half-width (not full-width)"),
    N_("not a valid resident ID number (GB 11643 check character)"),
    N_("the birth date in the ID number is not a real date"),
    N_("a mainland mobile (11 digits, 1[3-9]…) or a landline with area code (0xx-xxxxxxxx)"),
    N_("a social_group states its members {individuals, units}"),
    N_("the election has to have taken place (not after today)"),
    N_("the election cannot be before the current term began"),
    # marshmallow's own, for fields the portal sends as typed
    N_("Missing data for required field."),
    N_("Not a valid email address."),
    N_("Not a valid integer."),
    N_("Not a valid date."),
    # the evaluation's, to a reviewer scoring
    N_("missing: every criterion must be scored"),
    N_("not a criterion of this round"),
)

# (pattern, template): the pattern's named groups are the template's placeholders. `type` and `status` are
# the services' words for an organization type or a status, shown by their names in the user's language (the
# caller passes a translation for them); `doing` is one of ACTIONS.
TEMPLATES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(pattern), template) for pattern, template in (
    (r"a name has (?P<low>\d+) to (?P<high>\d+) characters \(this one has (?P<count>\d+)\)",
     N_("a name has %(low)s to %(high)s characters (this one has %(count)s)")),
    (r"a name begins with the region prefix (?P<prefix>.+)",
     N_("a name begins with the region prefix %(prefix)s")),
    (r"a name must not contain invisible or control characters \((?P<points>.+)\)",
     N_("a name must not contain invisible or control characters (%(points)s)")),
    (r"a name must not contain (?P<word>.+)",
     N_("a name must not contain %(word)s")),
    (r"a (?P<type>[a-z_]+) name ends with one of: (?P<words>.+)",
     N_("a %(type)s name ends with one of: %(words)s")),
    (r"a (?P<type>[a-z_]+) registers at least \d+ fen \((?P<yuan>\d+) CNY\)",
     N_("a %(type)s registers at least %(yuan)s yuan")),
    (r"a social_group has at least (?P<individuals>\d+) individual members, or at least (?P<units>\d+) unit "
     r"members, or at least (?P<total>\d+) together",
     N_("a social group has at least %(individuals)s individual members, or at least %(units)s unit members, "
        "or at least %(total)s together")),
    (r"a (?P<type>[a-z_]+) council has (?P<low>\d+) to (?P<high>\d+) people \(this one has (?P<count>\d+)\)",
     N_("a %(type)s council has %(low)s to %(high)s people (this one has %(count)s)")),
    (r"a council has exactly one chair \(this one has (?P<count>\d+)\)",
     N_("a council has exactly one chair (this one has %(count)s)")),
    (r"a term lasts 1 to (?P<most>\d+) years",
     N_("a term lasts 1 to %(most)s years")),
    (r"the name (?P<name>'.+') is already taken by a submitted or registered organization",
     N_("the name %(name)s is already taken by a submitted or registered organization")),
    (r"a report covers a finished year since registration \((?P<first>\d+) to (?P<last>\d+)\)",
     N_("a report covers a finished year since registration (%(first)s to %(last)s)")),
    (r"the annual report for (?P<year>\d+) has already been filed",
     N_("the annual report for %(year)s has already been filed")),
    (r"a renewal may be filed from (?P<opens>[\d-]+), (?P<months>\d+) months before the term ends on "
     r"(?P<ends>[\d-]+)",
     N_("a renewal may be filed from %(opens)s, %(months)s months before the term ends on %(ends)s")),
    (r"must be between 0 and (?P<most>[\d.]+)",
     N_("must be between 0 and %(most)s")),
    (r"project (?P<project>\S+) is (?P<status>[a-z_]+) and can no longer be reviewed",
     N_("project %(project)s is %(status)s and can no longer be reviewed")),
    (r"the round stopped accepting changes at (?P<at>\S+): (?P<doing>scoring|declaring a conflict) is no longer "
     r"possible",
     N_("the round stopped accepting changes at %(at)s: %(doing)s is no longer possible")),
    (r"the round is (?P<status>[a-z_]+): (?P<doing>scoring|declaring a conflict) is possible only while it is open",
     N_("the round is %(status)s: %(doing)s is possible only while it is open")),
))

# What a reviewer may have been doing when a round refused it (the evaluation service's words).
ACTIONS = {"scoring": N_("scoring"), "declaring a conflict": N_("declaring a conflict")}


def localized(message: str, gettext, term) -> str:
    """`message` in the user's language: `gettext` translates a msgid, `term` one of the services' words (an
    organization type, a status)."""
    translated = gettext(message)
    if translated != message:
        return translated
    for pattern, template in TEMPLATES:
        match = pattern.fullmatch(message)
        if match:
            translated_template = gettext(template)
            if translated_template == template:  # no translation in this language: the service's own words
                return message
            values = match.groupdict()
            for name in ("type", "status"):
                if name in values:
                    values[name] = term(values[name])
            if "doing" in values:
                values["doing"] = gettext(ACTIONS[values["doing"]])
            return translated_template % values
    return message
