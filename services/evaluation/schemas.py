"""Request and response schemas of the evaluation API (marshmallow; OpenAPI is generated from them)."""

from __future__ import annotations

import math
import re
from datetime import date, datetime, time

from marshmallow import ValidationError, fields, validate, validates_schema

from services.evaluation.scoring import AGGREGATIONS
from shared.schemas import EARLIEST_DATE, LATEST_DATE, MAX_FEN, PageArgs, Schema

# \Z, not $: `$` also matches before a final newline, which let "quality\n" through as a key.
KEY = validate.Regexp(r"^[a-z][a-z0-9_]{0,39}\Z", error="lower-case letters, digits and _, starting with a letter")
ID_LIST_MAX = 200
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
LAST_MILLISECOND = time(23, 59, 59, 999000)


def text(max_length: int) -> validate.Validator:
    """1..max_length characters, not all blank."""
    return validate.And(validate.Length(min=1, max=max_length),
                        validate.Regexp(r"(?s).*\S", error="must not be blank"))


class Number(fields.Float):
    """A JSON number, kept as the client wrote it (an integer stays an integer); never a string or a boolean."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid", input=value)
        if isinstance(value, float) and not math.isfinite(value):
            raise self.make_error("special")
        return value

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class Deadline(fields.DateTime):
    """An ISO 8601 date-time; a date alone means the end of that day (a deadline includes its whole day).
    Without an offset the district's time zone applies (done by the domain, which knows the setting)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and DATE_ONLY.match(value):
            try:
                moment = datetime.combine(date.fromisoformat(value), LAST_MILLISECOND)
            except ValueError:
                raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None
        else:
            moment = super()._deserialize(value, attr, data, **kwargs)
        # Moving a deadline near year 1 or 9999 into UTC would leave what a datetime can hold (a 500).
        if not EARLIEST_DATE <= moment.date() <= LATEST_DATE:
            raise ValidationError(f"must be from {EARLIEST_DATE} to {LATEST_DATE}")
        return moment


# -- rounds ---------------------------------------------------------------------------------------------------
class CriterionSchema(Schema):
    key = fields.Str(required=True, validate=KEY)
    label = fields.Str(required=True, validate=text(100))
    weight = Number(required=True, validate=validate.Range(min=0, max=1, min_inclusive=False))
    max_score = Number(required=True, validate=validate.Range(min=0, max=1000, min_inclusive=False))


class RoundCreateSchema(Schema):
    name = fields.Str(required=True, validate=text(200))
    year = fields.Int(required=True, strict=True, validate=validate.Range(min=2000, max=2100))
    criteria = fields.List(fields.Nested(CriterionSchema), required=True, validate=validate.Length(min=1, max=20))
    aggregation = fields.Str(required=True, validate=validate.OneOf(AGGREGATIONS))
    reviewers_per_project = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=50))
    closes_at = Deadline(required=True, metadata={
        "description": "ISO 8601; without an offset it is Asia/Shanghai local time; a date alone means the end of "
                       "that day"})


class RoundSummarySchema(Schema):
    ranked = fields.Int()
    insufficient_reviews = fields.Int()
    disqualified = fields.Int()
    reviews = fields.Int()
    disagreements = fields.Int()


class RoundSchema(Schema):
    id = fields.Str(attribute="_id")
    name = fields.Str()
    year = fields.Int()
    criteria = fields.List(fields.Nested(CriterionSchema))
    aggregation = fields.Str()
    reviewers_per_project = fields.Int()
    closes_at = fields.DateTime()
    status = fields.Str(metadata={"description": "open | closed | awarded"})
    projects = fields.Int(metadata={"description": "projects entered"})
    created_by = fields.Str()
    created_at = fields.DateTime()
    assigned_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    closed_by = fields.Str(allow_none=True)
    inputs_digest = fields.Str(allow_none=True, metadata={
        "description": "SHA-256 of every input the results were computed from, recorded at close"})
    results_digest = fields.Str(allow_none=True)
    algorithm = fields.Str(allow_none=True)
    summary = fields.Nested(RoundSummarySchema, allow_none=True)
    awarded_at = fields.DateTime(allow_none=True)


class RoundListArgs(PageArgs):
    status = fields.Str(validate=validate.OneOf(("open", "closed", "awarded")))
    year = fields.Int(validate=validate.Range(min=2000, max=2100))


# -- projects -------------------------------------------------------------------------------------------------
class ProjectCreateSchema(Schema):
    organization_id = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    title = fields.Str(required=True, validate=text(200))
    summary = fields.Str(required=True, validate=text(5000))
    budget_fen = fields.Int(required=True, strict=True, validate=validate.Range(min=0, max=MAX_FEN))


class ProjectSchema(Schema):
    id = fields.Str(attribute="_id")
    round_id = fields.Str()
    organization_id = fields.Str()
    organization_name = fields.Str(allow_none=True)
    title = fields.Str()
    summary = fields.Str()
    budget_fen = fields.Int()
    status = fields.Str(metadata={"description": "entered | disqualified"})
    entered_by = fields.Str()
    entered_at = fields.DateTime()
    disqualified_reason = fields.Str(allow_none=True)
    disqualified_at = fields.DateTime(allow_none=True)


class ProjectListArgs(PageArgs):
    status = fields.Str(validate=validate.OneOf(("entered", "disqualified")))
    organization_id = fields.Str()


class DisqualifySchema(Schema):
    reason = fields.Str(required=True, validate=text(500))


# -- reviewers and assignments ------------------------------------------------------------------------------
class ReviewerCreateSchema(Schema):
    reviewer = fields.Str(required=True, validate=text(100), metadata={"description": "the reviewer's token `sub`"})
    name = fields.Str(required=True, validate=text(100))
    affiliations = fields.List(fields.Str(validate=validate.Length(min=1, max=100)), load_default=list,
                               validate=validate.Length(max=ID_LIST_MAX),
                               metadata={"description": "organization ids the reviewer must never review"})


class ReviewerSchema(Schema):
    id = fields.Str(attribute="_id", metadata={"description": "the reviewer's place in this round"})
    reviewer = fields.Str()
    name = fields.Str()
    affiliations = fields.List(fields.Str())
    load = fields.Int(metadata={"description": "projects currently assigned"})
    added_at = fields.DateTime()


class AssignmentRunSchema(Schema):
    round_id = fields.Str()
    projects = fields.Int()
    reviewers = fields.Int()
    reviewers_per_project = fields.Int()
    assignments = fields.Int()
    added = fields.Int()
    removed = fields.Int()
    min_load = fields.Int(allow_none=True)
    max_load = fields.Int(allow_none=True)


class AssignmentSchema(Schema):
    reviewer = fields.Str()
    project_id = fields.Str()
    organization_id = fields.Str()
    title = fields.Str()
    status = fields.Str(metadata={"description": "active | conflict"})
    scored = fields.Bool()
    assigned_at = fields.DateTime()
    replaces = fields.Str(allow_none=True, metadata={"description": "the reviewer who declared a conflict"})


class AssignmentListArgs(PageArgs):
    reviewer = fields.Str(metadata={"description": "officers: any reviewer; reviewers: only themselves"})
    status = fields.Str(load_default="active", validate=validate.OneOf(("active", "conflict")))


# -- scores -----------------------------------------------------------------------------------------------------
class ScoreSubmissionSchema(Schema):
    scores = fields.Dict(keys=fields.Str(validate=validate.Length(min=1, max=40)), values=Number())
    conflict = fields.Bool(load_default=False)
    comment = fields.Str(load_default="", validate=validate.Length(max=5000))

    @validates_schema
    def scores_or_conflict(self, data, **kwargs):
        if data["conflict"] and "scores" in data:
            raise ValidationError("send either scores or a conflict declaration, not both", "conflict")
        if not data["conflict"] and "scores" not in data:
            raise ValidationError("required (or declare a conflict with conflict: true)", "scores")


class ReviewSchema(Schema):
    round_id = fields.Str()
    project_id = fields.Str()
    reviewer = fields.Str()
    conflict = fields.Bool(dump_default=False)
    scores = fields.Dict(keys=fields.Str(), values=Number(), allow_none=True)
    comment = fields.Str()
    weighted_score = fields.Float(allow_none=True, metadata={"description": "this review's 0..100 score"})
    revision = fields.Int()
    submitted_at = fields.DateTime()
    updated_at = fields.DateTime()
    replacement = fields.Str(allow_none=True, metadata={
        "description": "conflicts: the reviewer assigned instead, or null when none was free"})


# -- results and awards -------------------------------------------------------------------------------------------
class SpreadSchema(Schema):
    sd = fields.Float(metadata={"description": "population standard deviation of the reviews' weighted scores"})
    min = fields.Float()
    max = fields.Float()


class ResultSchema(Schema):
    project_id = fields.Str()
    organization_id = fields.Str()
    title = fields.Str()
    score = fields.Float(allow_none=True, metadata={"description": "weighted 0..100, rounded half up to cents"})
    rank = fields.Int(allow_none=True)
    reviews = fields.Int()
    status = fields.Str(metadata={"description": "ranked | insufficient_reviews | disqualified"})
    spread = fields.Nested(SpreadSchema, allow_none=True)
    disagreement = fields.Bool(metadata={"description": "reviewers disagree strongly: look before awarding"})


class VerificationSchema(Schema):
    round_id = fields.Str()
    algorithm = fields.Str(allow_none=True)
    recorded_inputs_digest = fields.Str(allow_none=True, metadata={"description": "recorded at close"})
    inputs_digest = fields.Str(metadata={"description": "of the inputs stored now"})
    recorded_results_digest = fields.Str(allow_none=True)
    results_digest = fields.Str(metadata={"description": "of the results recomputed now"})
    published_results_digest = fields.Str(metadata={"description": "of the results being served"})
    inputs_unchanged = fields.Bool()
    results_reproduced = fields.Bool()


class AwardRequestSchema(Schema):
    project_id = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    tier = fields.Str(required=True, validate=text(50))
    prize_fen = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=MAX_FEN))
    fund_id = fields.Str(validate=validate.Length(min=1, max=100), metadata={
        "description": "optional: the fund that pays the prize (else the newest fund of the round's year)"})


class AwardsCreateSchema(Schema):
    awards = fields.List(fields.Nested(AwardRequestSchema), required=True,
                         validate=validate.Length(min=1, max=1000))


class AwardSchema(Schema):
    id = fields.Str(attribute="_id")
    round_id = fields.Str()
    year = fields.Int()
    project_id = fields.Str()
    organization_id = fields.Str()
    title = fields.Str()
    rank = fields.Int()
    score = fields.Float()
    tier = fields.Str()
    prize_fen = fields.Int()
    fund_id = fields.Str(allow_none=True)
    granted_by = fields.Str()
    granted_at = fields.DateTime()


class AwardsGrantedSchema(Schema):
    round_id = fields.Str()
    status = fields.Str()
    awards = fields.List(fields.Nested(AwardSchema))
