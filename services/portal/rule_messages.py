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
    # what the stores and the shared layer say (a command that lost a race, a lookup, a request refused)
    N_("the organization changed while this request was deciding; reload it and retry"),
    N_("not a valid unified social credit code (GB 32100)"),
    N_("a sweep cannot look ahead: as_of must not be after today (Asia/Shanghai)"),
    N_("verifications exist only once the round is closed; it is still open"),
    N_("the round changed while awards were granted; reload it"),
    N_("a reviewer sees only its own assignments"),
    N_("reviewers see other reviewers' scores only once the round is closed"),
    N_("this Idempotency-Key was already used with a different request body"),
    N_("already used with a different request body"),
    N_("this operation needs an Idempotency-Key header"),
    N_("at most 200 characters"),
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
    (r"no fund (?P<fund>\S+)",
     N_("no fund %(fund)s")),
    (r"no grant (?P<grant>\S+)",
     N_("no grant %(grant)s")),
    (r"no residency (?P<residency>\S+)",
     N_("no residency %(residency)s")),
    (r"fund (?P<fund>\S+) cannot go below zero available",
     N_("fund %(fund)s cannot go below zero available")),
    (r"fund (?P<fund>\S+) changed while this command ran; retry it",
     N_("fund %(fund)s changed while this command ran; retry it")),
    (r"grant (?P<grant>\S+) changed while this command ran; retry it",
     N_("grant %(grant)s changed while this command ran; retry it")),
    (r"residency (?P<residency>\S+) changed while this command ran; retry it",
     N_("residency %(residency)s changed while this command ran; retry it")),
    # the registry's to officers, and its lookups
    (r"no organization (?P<org>\S+)",
     N_("no organization %(org)s")),
    (r"no organization (?P<org>\S+) is known to this service",
     N_("no organization %(org)s is known to this service")),
    (r"no registered organization with the code (?P<uscc>\S+)",
     N_("no registered organization with the code %(uscc)s")),
    (r"no term renewal (?P<renewal>\S+) for organization (?P<org>\S+)",
     N_("no term renewal %(renewal)s for organization %(org)s")),
    (r"the renewal (?P<renewal>\S+) filed on (?P<filed>[\d-]+) is still waiting for a decision",
     N_("the renewal %(renewal)s filed on %(filed)s is still waiting for a decision")),
    (r"the organization is at version (?P<current>\d+), not (?P<expected>\d+); reload it and decide again",
     N_("the organization is at version %(current)s, not %(expected)s; reload it and decide again")),
    (r"If-Match (?P<tag>.+) names no version of this organization",
     N_("If-Match %(tag)s names no version of this organization")),
    (r"only a (?P<statuses>[a-z_ ]+) organization can be (?P<done>[a-z_]+); this one is (?P<status>[a-z_]+)",
     N_("only a %(statuses)s organization can be %(done)s; this one is %(status)s")),
    (r"only a submitted renewal can be approved; this one is (?P<status>[a-z_]+)",
     N_("only a submitted renewal can be approved; this one is %(status)s")),
    (r"only a submitted renewal can be rejected; this one is (?P<status>[a-z_]+)",
     N_("only a submitted renewal can be rejected; this one is %(status)s")),
    (r"no risk flag (?P<flag>\S+) on organization (?P<org>\S+)",
     N_("no risk flag %(flag)s on organization %(org)s")),
    (r"the flag (?P<flag>\S+) was already cleared on (?P<on>\S+)",
     N_("the flag %(flag)s was already cleared on %(on)s")),
    (r"a serious flag can be cleared only (?P<years>\d+) years after it was raised, from (?P<earliest>[\d-]+)",
     N_("a serious flag can be cleared only %(years)s years after it was raised, from %(earliest)s")),
    # the evaluation's lookups, reviewers and assignment
    (r"no round (?P<round>\S+)",
     N_("no round %(round)s")),
    (r"no project (?P<project>\S+) in round (?P<round>\S+)",
     N_("no project %(project)s in round %(round)s")),
    (r"applicant (?P<sub>.+) does not act for organization (?P<org>\S+)",
     N_("applicant %(sub)s does not act for organization %(org)s")),
    (r"reviewer (?P<reviewer>.+) is already in round (?P<round>\S+)",
     N_("reviewer %(reviewer)s is already in round %(round)s")),
    (r"reviewer (?P<reviewer>.+) has no review of project (?P<project>\S+)",
     N_("reviewer %(reviewer)s has no review of project %(project)s")),
    (r"reviewer (?P<reviewer>.+) is not assigned to project (?P<project>\S+)",
     N_("reviewer %(reviewer)s is not assigned to project %(project)s")),
    (r"reviewer (?P<reviewer>.+) declared a conflict of interest on project (?P<project>\S+)",
     N_("reviewer %(reviewer)s declared a conflict of interest on project %(project)s")),
    (r"reviewer (?P<reviewer>.+) is no longer assigned to project (?P<project>\S+)",
     N_("reviewer %(reviewer)s is no longer assigned to project %(project)s")),
    (r"project (?P<project>\S+) cannot be awarded: (?P<refusal>.+)",
     N_("project %(project)s cannot be awarded: %(refusal)s")),
    (r"no assignment is possible: (?P<refusal>.+)",
     N_("no assignment is possible: %(refusal)s")),
    (r"every project needs (?P<needed>\d+) reviewers? but the round has (?P<count>\d+)",
     N_("every project needs %(needed)s reviewers but the round has %(count)s")),
    (r"project (?P<project>\S+) needs (?P<needed>\d+) reviewers? but only (?P<allowed>\d+) of the round's "
     r"(?P<count>\d+) reviewers are neither affiliated with its organization (?P<org>\S+) nor in declared conflict "
     r"with it",
     N_("project %(project)s needs %(needed)s reviewers but only %(allowed)s of the round's %(count)s reviewers are "
        "neither affiliated with its organization %(org)s nor in declared conflict with it")),
    (r"reviewers (?P<names>.+) already scored more projects than the balanced maximum of (?P<upper>\d+), so loads "
     r"cannot be kept within one of each other",
     N_("reviewers %(names)s already scored more projects than the balanced maximum of %(upper)s, so loads cannot be "
        "kept within one of each other")),
    (r"projects (?P<names>.+) cannot all get (?P<needed>\d+) reviewers? while every reviewer keeps at most "
     r"(?P<upper>\d+) projects \(loads within one of each other\): the reviewers free to review them are too few",
     N_("projects %(names)s cannot all get %(needed)s reviewers while every reviewer keeps at most %(upper)s projects "
        "(loads within one of each other): the reviewers free to review them are too few")),
    (r"reviewer (?P<reviewer>.+) cannot be given the balanced minimum of (?P<lower>\d+) projects: it is affiliated "
     r"with \(or in declared conflict with\) the organizations of too many projects for loads to stay within one of "
     r"each other",
     N_("reviewer %(reviewer)s cannot be given the balanced minimum of %(lower)s projects: it is affiliated with (or "
        "in declared conflict with) the organizations of too many projects for loads to stay within one of each "
        "other")),
    # what every service says
    (r"this action needs the role (?P<roles>[a-z ]+), not (?P<role>[a-z]+)",
     N_("this action needs the role %(roles)s, not %(role)s")),
    (r"at most (?P<limit>\d+) (?P<bucket>[a-z-]+) requests a minute per client; retry in (?P<seconds>\d+) s",
     N_("at most %(limit)s %(bucket)s requests a minute per client; retry in %(seconds)s s")),
))

# Words a message names from a small set, shown in the user's language: what the user was doing when a round
# refused it (the evaluation's words), what a registry command would have done (`only a registered organization
# can be ...`), and which rate limit a client reached.
ACTIONS = {"scoring": N_("scoring"), "declaring a conflict": N_("declaring a conflict"),
           "entering a project": N_("entering a project"), "adding a reviewer": N_("adding a reviewer"),
           "assigning reviewers": N_("assigning reviewers")}
DONE = {"approved": N_("approved"), "rejected": N_("rejected"), "deregistered": N_("deregistered"),
        "renewed": N_("renewed"), "reporting": N_("reporting"), "flagged": N_("flagged")}
BUCKETS = {"applications": N_("applications")}  # the services' rate limits (shared.ratelimit)
WORDS = {"doing": ACTIONS, "done": DONE, "bucket": BUCKETS}
TERM_GROUPS = ("type", "status", "list", "role")  # one of the services' words (`term` shows it)
TERM_LIST_GROUPS = ("statuses", "roles")  # several, "submitted or registered"


def localized(message: str, gettext, term) -> str:
    """`message` in the user's language: `gettext` translates a msgid, `term` one of the services' words (an
    organization type, a status, a role)."""
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
            for name in TERM_GROUPS:
                if name in values:
                    values[name] = term(values[name])
            for name in TERM_LIST_GROUPS:
                if name in values:
                    values[name] = " / ".join(term(word) for word in values[name].split(" or "))
            for name, words in WORDS.items():
                if name in values:
                    if values[name] not in words:
                        return message
                    values[name] = gettext(words[values[name]])
            if "refusal" in values:  # a message inside a message
                values["refusal"] = localized(values["refusal"], gettext, term)
            for name in values:
                if name.endswith("_fen"):
                    values[name] = format_yuan(int(values[name]))
            return translated_template % values
    return message
