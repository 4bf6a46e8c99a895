"""The evaluation service's HTTP API: thin views that check the role, parse, and call the store."""

from __future__ import annotations

from flask.views import MethodView

from services.evaluation.schemas import (AssignmentListArgs, AssignmentRunSchema, AssignmentSchema,
                                         AwardsCreateSchema, AwardsGrantedSchema, AwardSchema, DisqualifySchema,
                                         ProjectCreateSchema, ProjectListArgs, ProjectSchema, ResultSchema,
                                         ReviewerCreateSchema, ReviewerSchema, ReviewSchema, RoundCreateSchema,
                                         RoundListArgs, RoundSchema, ScoreSubmissionSchema, VerificationSchema)
from shared.auth import current_principal, requires
from shared.blueprint import Blueprint
from shared.organizations import read_model_blueprint
from shared.schemas import PageArgs, page_of
from shared.web import idempotency_key, store

ANYONE = ("officer", "reviewer", "applicant")

organizations_blp = read_model_blueprint(lambda: store().organizations)

blp = Blueprint("rounds", __name__, url_prefix="/api/v1/rounds",
                description="Brand-project award rounds: projects, reviewers, assignment, scoring, results, awards")


def actor() -> str:
    return current_principal().sub


@blp.route("")
class Rounds(MethodView):
    @requires("officer")
    @blp.arguments(RoundCreateSchema)
    @blp.response(201, RoundSchema)
    def post(self, body):
        """Open a round: weighted criteria (weights sum to 1), aggregation, reviewers per project, closing time"""
        return store().create_round(body, actor=actor(), idempotency=idempotency_key(body))

    @requires(*ANYONE)
    @blp.arguments(RoundListArgs, location="query")
    @blp.response(200, page_of(RoundSchema))
    def get(self, args):
        """Rounds, newest first (filters: status, year)"""
        return store().list_rounds(args)


@blp.route("/<round_id>")
class RoundById(MethodView):
    @requires(*ANYONE)
    @blp.response(200, RoundSchema)
    def get(self, round_id):
        """One round; once closed, with the digest of the inputs its results were computed from"""
        return store().round(round_id)


@blp.route("/<round_id>/projects")
class Projects(MethodView):
    @requires("applicant")
    @blp.arguments(ProjectCreateSchema)
    @blp.response(201, ProjectSchema)
    def post(self, body, round_id):
        """Enter a project (registered organizations with no active risk flag only: else 409 saying why)"""
        return store().enter_project(round_id, body, principal=current_principal(),
                                     idempotency=idempotency_key(body))

    @requires("officer", "applicant")
    @blp.arguments(ProjectListArgs, location="query")
    @blp.response(200, page_of(ProjectSchema))
    def get(self, args, round_id):
        """The round's projects (applicants: their organizations' only)"""
        return store().list_projects(round_id, args, current_principal())


@blp.route("/<round_id>/projects/<project_id>")
class ProjectById(MethodView):
    @requires(*ANYONE)
    @blp.response(200, ProjectSchema)
    def get(self, round_id, project_id):
        """One project (applicants: their own; reviewers: those assigned to them)"""
        return store().visible_project(round_id, project_id, current_principal())


@blp.route("/<round_id>/projects/<project_id>/disqualify")
class Disqualify(MethodView):
    @requires("officer")
    @blp.arguments(DisqualifySchema)
    @blp.response(200, ProjectSchema)
    def post(self, body, round_id, project_id):
        """Disqualify a project while the round is open (its assignments are withdrawn)"""
        return store().disqualify_project(round_id, project_id, reason=body["reason"].strip(), actor=actor())


@blp.route("/<round_id>/reviewers")
class Reviewers(MethodView):
    @requires("officer")
    @blp.arguments(ReviewerCreateSchema)
    @blp.response(201, ReviewerSchema)
    def post(self, body, round_id):
        """Add a reviewer with the organizations it is affiliated with (it is never assigned their projects)"""
        return store().add_reviewer(round_id, body, actor=actor(), idempotency=idempotency_key(body))

    @requires("officer")
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_of(ReviewerSchema))
    def get(self, args, round_id):
        """The round's reviewers with their current loads"""
        return store().list_reviewers(round_id, args)


@blp.route("/<round_id>/assignments")
class Assignments(MethodView):
    @requires("officer")
    @blp.response(200, AssignmentRunSchema)
    def post(self, round_id):
        """Assign reviewers_per_project reviewers to every project: never an affiliated one, loads within one.

        Scored assignments stay; others may move to keep the balance (e.g. after new reviewers or projects).
        409 saying why when no assignment satisfies the rules."""
        return store().run_assignment(round_id, actor=actor())

    @requires("officer", "reviewer")
    @blp.arguments(AssignmentListArgs, location="query")
    @blp.response(200, page_of(AssignmentSchema))
    def get(self, args, round_id):
        """Assignments {reviewer, project_id} (reviewers: their own)"""
        return store().list_assignments(round_id, args, current_principal())


@blp.route("/<round_id>/projects/<project_id>/scores")
class Scores(MethodView):
    @requires("reviewer")
    @blp.arguments(ScoreSubmissionSchema)
    @blp.response(200, ReviewSchema)
    def put(self, body, round_id, project_id):
        """Score an assigned project (every criterion, 0..max_score), editable until the round closes;
        or declare a conflict of interest ({"conflict": true}): the review is dropped and a free reviewer
        is assigned instead"""
        return store().submit(round_id, project_id, body, principal=current_principal())

    @requires("reviewer")
    @blp.response(200, ReviewSchema)
    def get(self, round_id, project_id):
        """The calling reviewer's own review of the project"""
        return store().own_review(round_id, project_id, current_principal())


@blp.route("/<round_id>/projects/<project_id>/reviews")
class Reviews(MethodView):
    @requires("officer", "reviewer")
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_of(ReviewSchema))
    def get(self, args, round_id, project_id):
        """Every review of a project (reviewers: only once the round is closed)"""
        return store().list_reviews(round_id, project_id, args, current_principal())


@blp.route("/<round_id>/close")
class Close(MethodView):
    @requires("officer")
    @blp.response(200, RoundSchema)
    def post(self, round_id):
        """Close the round: no more scores; the results are computed and the inputs' digest recorded"""
        return store().close(round_id, actor=actor())


@blp.route("/<round_id>/results")
class Results(MethodView):
    @requires(*ANYONE)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_of(ResultSchema))
    def get(self, args, round_id):
        """Every project's result, by rank (409 before the round closes; applicants: their own projects)"""
        return store().list_results(round_id, args, current_principal())


@blp.route("/<round_id>/verification")
class Verification(MethodView):
    @requires("officer")
    @blp.response(200, VerificationSchema)
    def get(self, round_id):
        """Audit a closed round: recompute its results from the stored scores and compare the digests with
        those recorded at close (409 while open)"""
        return store().verify(round_id)


@blp.route("/<round_id>/awards")
class Awards(MethodView):
    @requires("officer")
    @blp.arguments(AwardsCreateSchema)
    @blp.response(201, AwardsGrantedSchema)
    def post(self, body, round_id):
        """Grant the round's awards (tier, prize_fen, optional fund_id): each publishes evaluation.award.granted"""
        return store().grant_awards(round_id, body, actor=actor(), idempotency=idempotency_key(body))

    @requires(*ANYONE)
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, page_of(AwardSchema))
    def get(self, args, round_id):
        """The round's awards"""
        return store().list_awards(round_id, args)
