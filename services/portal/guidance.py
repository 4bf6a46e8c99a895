"""What an organization can do about each of its risk flags (DOMAIN.md, Risk lists). Pure.

The registry gives a flag's `list` and `reason` (`term_overdue`, `annual_report_missing:2025`,
`abnormal_two_years`, or an officer's own words); the applicant sees what the reason means and the step
that clears it. Messages are English msgids, translated where they are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.portal.i18n import N_


@dataclass(frozen=True)
class Advice:
    meaning: str  # msgid
    action: str  # msgid
    params: dict = field(default_factory=dict)
    link: str | None = None  # "renewal" or "annual_report": the form that clears it


def advice_for(flag: dict) -> Advice:
    reason = str(flag.get("reason") or "")
    if flag.get("list") == "serious":
        return Advice(N_("Listed as seriously illegal and dishonest."),
                      N_("Only the bureau can remove this listing, and not earlier than two years after it was "
                         "raised. Contact the bureau's registration office with evidence that the problem is "
                         "corrected."))
    if reason == "term_overdue":
        return Advice(N_("The council's term has ended without an approved term renewal."),
                      N_("File a term renewal with the election date and the new council; the flag is cleared "
                         "when the bureau approves it."), link="renewal")
    if reason.startswith("annual_report_missing:"):
        year = reason.split(":", 1)[1]
        return Advice(N_("No annual report was filed for %(year)s."),
                      N_("File the annual report for %(year)s; the flag is cleared as soon as it is filed."),
                      params={"year": year}, link="annual_report")
    if reason == "abnormal_two_years":
        return Advice(N_("An abnormal-activity flag stayed active for two years."),
                      N_("Only the bureau can clear this flag. Contact the registration office."))
    return Advice(N_("Flagged by the bureau: %(reason)s"),
                  N_("Contact the bureau about the reason given. A flag raised by an officer expires six months "
                     "after it was raised."), params={"reason": reason})
