"""Display names of the APIs' enumerated values (statuses, types, lists, roles), as msgids."""

from __future__ import annotations

from services.portal.i18n import N_

TERMS = {
    # organization types
    "social_group": N_("Social group"), "social_service_agency": N_("Social service agency"),
    "foundation": N_("Foundation"),
    # organization statuses
    "submitted": N_("Submitted"), "registered": N_("Registered"), "rejected": N_("Rejected"),
    "deregistered": N_("Deregistered"), "approved": N_("Approved"),
    # risk
    "none": N_("No risk"), "abnormal": N_("Abnormal activity list"), "serious": N_("Serious violations list"),
    # council roles
    "chair": N_("Chair"), "vice_chair": N_("Vice chair"), "secretary_general": N_("Secretary general"),
    "member": N_("Member"), "supervisor": N_("Supervisor"),
    # rounds and results
    "open": N_("Open"), "closed": N_("Closed"), "awarded": N_("Awarded"), "mean": N_("Mean"),
    "trimmed_mean": N_("Trimmed mean"), "zscore": N_("Z-score"), "ranked": N_("Ranked"),
    "insufficient_reviews": N_("Insufficient reviews"), "disqualified": N_("Disqualified"),
    "entered": N_("Entered"),
    # fund and park
    "active": N_("Active"), "completed": N_("Completed"), "paid": N_("Paid"), "held": N_("Held"),
    "cancelled": N_("Cancelled"), "graduated": N_("Graduated"), "ended": N_("Ended"),
    # roles
    "applicant": N_("Applicant"), "reviewer": N_("Reviewer"), "officer": N_("Officer"),
    "Applicant": N_("Applicant"), "Reviewer": N_("Reviewer"), "Officer": N_("Officer"),
}

SERVICES = {"registry": N_("registration"), "evaluation": N_("award evaluation"), "fund": N_("fund and park")}
