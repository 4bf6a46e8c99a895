"""The services' rule messages in the user's language: the registry's to applicants, the evaluation's to
applicants entering a project, reviewers scoring and officers running a round. Pure.

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
    # the evaluation's
    N_("missing: every criterion must be scored"),
    N_("not a criterion of this round"),
    N_("must be in the future"),
    N_("awards can be granted only once the round is closed; it is still open"),
    N_("the round's awards were already granted"),
)

ENTERING = r"only a registered organization with no active risk flag may enter: organization (?P<org>\S+) is "

# (pattern, template): the pattern's named groups are the template's placeholders. `type`, `status` and `list`
# are the services' words for an organization type, a status or a risk list, shown by their names in the
# user's language (the caller passes a translation for them); `doing` is one of ACTIONS.
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
    (r"the round stopped accepting changes at (?P<at>\S+): (?P<doing>[a-z ]+) is no longer possible",
     N_("the round stopped accepting changes at %(at)s: %(doing)s is no longer possible")),
    (r"the round is (?P<status>[a-z_]+): (?P<doing>[a-z ]+) is possible only while it is open",
     N_("the round is %(status)s: %(doing)s is possible only while it is open")),
    (r"the round is already (?P<status>[a-z_]+)",
     N_("the round is already %(status)s")),
    (ENTERING + r"not registered \(no registration is known to this service\)",
     N_("only a registered organization with no active risk flag may enter: organization %(org)s is not "
        "registered (no registration is known to this service)")),
    (ENTERING + r"(?P<status>[a-z_]+), not registered",
     N_("only a registered organization with no active risk flag may enter: organization %(org)s is %(status)s, "
        "not registered")),
    (ENTERING + r"on the (?P<list>[a-z_]+) risk list",
     N_("only a registered organization with no active risk flag may enter: organization %(org)s is on the "
        "%(list)s")),
    (r"criterion keys must be unique; repeated: (?P<keys>.+)",
     N_("criterion keys must be unique; repeated: %(keys)s")),
    (r"weights must sum to 1; they sum to (?P<total>[\d.]+)",
     N_("weights must sum to 1; they sum to %(total)s")),
    (r"project (?P<project>\S+) is already (?P<status>[a-z_]+)",
     N_("project %(project)s is already %(status)s")),
    (r"a project can be awarded once; repeated: (?P<projects>.+)",
     N_("a project can be awarded once; repeated: %(projects)s")),
    (r"project (?P<project>\S+) is not in this round's results",
     N_("project %(project)s is not in this round's results")),
    (r"project (?P<project>\S+) is (?P<status>[a-z_]+) and cannot be awarded",
     N_("project %(project)s is %(status)s and cannot be awarded")),
))

# What the user was doing when a round refused it (the evaluation service's words).
ACTIONS = {"scoring": N_("scoring"), "declaring a conflict": N_("declaring a conflict"),
           "entering a project": N_("entering a project"), "adding a reviewer": N_("adding a reviewer"),
           "assigning reviewers": N_("assigning reviewers")}


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
            for name in ("type", "status", "list"):
                if name in values:
                    values[name] = term(values[name])
            if "doing" in values:
                if values["doing"] not in ACTIONS:
                    return message
                values["doing"] = gettext(ACTIONS[values["doing"]])
            return translated_template % values
    return message
