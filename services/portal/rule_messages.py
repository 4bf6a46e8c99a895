"""The services' rule messages in the user's language: the registry's to applicants, the evaluation's to
applicants entering a project, reviewers scoring and officers running a round, the fund's to officers. Pure.

The services answer in English (their problem documents serve programs and logs too), and the portal shows
each broken rule beside its field. A fixed message is translated by the catalog as it is (`FIXED` lists
them, for extraction); a message that carries values (a word, a number, a date) is matched here and shown
as its template, translated, with those values. A message not known here is shown as the service wrote it.

tests/unit/test_portal_rule_messages.py makes the services' domain code produce every message and checks
that each is known here, so a rule reworded there cannot fall back to English unnoticed.
"""

from __future__ import annotations

import re

from services.portal.forms import format_yuan
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
    # the fund's
    N_("at least one tranche is needed"),
    N_("every tranche is a positive percentage"),
)

# (pattern, template): the pattern's named groups are the template's placeholders. `type`, `status` and `list`
# are the services' words for an organization type, a status or a risk list, shown by their names in the
# user's language (the caller passes a translation for them); `doing` is one of ACTIONS; `refusal` is a
# message inside the message (an organization's status, which the fund and the evaluation both give).
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
    (r"only a registered organization with no active risk flag may enter: (?P<refusal>.+)",
     N_("only a registered organization with no active risk flag may enter: %(refusal)s")),
    (r"organization (?P<org>\S+) is not registered \(no registration is known to this service\)",
     N_("organization %(org)s is not registered (no registration is known to this service)")),
    (r"organization (?P<org>.+) is on the (?P<list>[a-z_]+) risk list",
     N_("organization %(org)s is on the %(list)s")),
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
    # the fund's; amounts (groups ending in _fen) are shown in yuan
    (r"at most (?P<most>\d+) tranches",
     N_("at most %(most)s tranches")),
    (r"tranches must sum to 100, not (?P<total>\d+)",
     N_("tranches must sum to 100, not %(total)s")),
    (r"(?P<amount_fen>\d+) fen is too small to pay every tranche at least 1 fen",
     N_("%(amount_fen)s yuan is too small to pay every tranche at least 0.01 yuan")),
    (r"organization (?P<org>\S+) is not known to the fund service as a registered organization",
     N_("organization %(org)s is not known to the fund service as a registered organization")),
    (r"organization (?P<org>.+) is deregistered",
     N_("organization %(org)s is deregistered")),
    (r"organization (?P<org>.+) is (?P<status>[a-z_]+), not registered",
     N_("organization %(org)s is %(status)s, not registered")),
    (r"organization (?P<org>.+) is on the serious list \(严重违法失信名单\)",
     N_("organization %(org)s is on the serious list")),
    (r"nothing may be paid: (?P<refusal>.+)",
     N_("nothing may be paid: %(refusal)s")),
    (r"fund (?P<fund>\S+) has (?P<available_fen>\d+) fen available; the grant needs (?P<amount_fen>\d+) fen",
     N_("fund %(fund)s has %(available_fen)s yuan available; the grant needs %(amount_fen)s yuan")),
    (r"tranche (?P<tranche>\d+) of (?P<amount_fen>\d+) fen would exceed the grant's (?P<grant_fen>\d+) fen",
     N_("tranche %(tranche)s of %(amount_fen)s yuan would exceed the grant's %(grant_fen)s yuan")),
    (r"grant (?P<grant>\S+) was rejected \((?P<reason>.*)\); nothing is paid on it",
     N_("grant %(grant)s was rejected (%(reason)s); nothing is paid on it")),
    (r"tranche (?P<tranche>\d+) of grant (?P<grant>\S+) is held while the organization is on the abnormal list; no "
     r"further tranche is paid until it is released",
     N_("tranche %(tranche)s of grant %(grant)s is held while the organization is on the abnormal list; no further "
        "tranche is paid until it is released")),
    (r"grant (?P<grant>\S+) has (?P<count>\d+) tranches",
     N_("grant %(grant)s has %(count)s tranches")),
    (r"all (?P<count>\d+) tranches of grant (?P<grant>\S+) have been disbursed",
     N_("all %(count)s tranches of grant %(grant)s have been disbursed")),
    (r"tranche (?P<requested>\d+) is not the next one; the next tranche is (?P<next>\d+)",
     N_("tranche %(requested)s is not the next one; the next tranche is %(next)s")),
    (r"grant (?P<grant>\S+) was rejected; nothing was paid that could be clawed back",
     N_("grant %(grant)s was rejected; nothing was paid that could be clawed back")),
    (r"a clawback of (?P<amount_fen>\d+) fen exceeds the (?P<paid_fen>\d+) fen paid on grant (?P<grant>\S+) \(net of "
     r"earlier clawbacks\)",
     N_("a clawback of %(amount_fen)s yuan exceeds the %(paid_fen)s yuan paid on grant %(grant)s (net of earlier "
        "clawbacks)")),
    (r"a residency lasts (?P<low>\d+) to (?P<high>\d+) years",
     N_("a residency lasts %(low)s to %(high)s years")),
    (r"only registered organizations may reside in the park; (?P<org>.+) is not known to the fund service",
     N_("only registered organizations may reside in the park; %(org)s is not known to the fund service")),
    (r"only registered organizations may reside in the park; (?P<org>.+) is (?P<status>[a-z_]+)",
     N_("only registered organizations may reside in the park; %(org)s is %(status)s")),
    (r"unit (?P<unit>.+) is taken by residency (?P<residency>\S+) of (?P<org>\S+) from (?P<start>[\d-]+) to "
     r"(?P<end>[\d-]+); a unit holds one resident at a time",
     N_("unit %(unit)s is taken by residency %(residency)s of %(org)s from %(start)s to %(end)s; a unit holds one "
        "resident at a time")),
    (r"residency (?P<residency>\S+) already ended \((?P<status>[a-z_]+) on (?P<on>\S+)\)",
     N_("residency %(residency)s already ended (%(status)s on %(on)s)")),
    (r"a park unit with code (?P<code>'.+') already exists",
     N_("a park unit with code %(code)s already exists")),
    (r"no park unit (?P<unit>'.+')",
     N_("no park unit %(unit)s")),
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
            if "refusal" in values:  # a message inside a message
                values["refusal"] = localized(values["refusal"], gettext, term)
            for name in values:
                if name.endswith("_fen"):
                    values[name] = format_yuan(int(values[name]))
            return translated_template % values
    return message
