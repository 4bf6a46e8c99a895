"""The evaluation service's only MongoDB code: collections, indexes and the transaction behind each command.

Concurrency: MongoDB transactions are snapshot-isolated, so two commands that only read what the other
writes could both commit (write skew). Where that would break a rule, the command writes the document the
other one writes too, so one of them conflicts and is retried on fresh data:
- a score or a conflict declaration writes its reviewer's document, and closing writes every reviewer
  document of the round: no score commits unseen by the results;
- entering a project and disqualifying one write the round, as closing does: no project slips into or out
  of a round as it closes;
- entering a project writes its organization's read-model document, as a registry event does: no project
  enters while its organization is being flagged.
"""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from services.evaluation import domain
from shared.auth import Principal
from shared.errors import Conflict, Forbidden, NotFound
from shared.events import Event, now_utc
from shared.mongo import find_by_ids, in_lists
from shared.organizations import OrganizationReadModel
from shared.schemas import page_response, skip_of
from shared.unit_of_work import IdempotencyKey
from shared.web import ServiceContext

SCORE_INPUT = {"project_id": 1, "reviewer": 1, "scores": 1}


class Collections:
    """The evaluation database's collections and their indexes (the worker's handlers use them too)."""

    def __init__(self, db: Database):
        self.rounds = db["rounds"]
        self.projects = db["projects"]
        self.reviewers = db["reviewers"]  # _id: "<round>:<reviewer sub>"
        self.assignments = db["assignments"]  # _id: "<project>:<reviewer sub>"
        self.reviews = db["reviews"]  # _id: the assignment's
        self.results = db["results"]  # _id: "<round>:<project>", written once at close
        self.awards = db["awards"]
        self.organizations = OrganizationReadModel(db)

    def ensure_indexes(self) -> None:
        self.rounds.create_index([("status", ASCENDING), ("created_at", DESCENDING)])
        self.rounds.create_index([("year", ASCENDING), ("created_at", DESCENDING)])
        self.projects.create_index([("round_id", ASCENDING), ("status", ASCENDING), ("_id", ASCENDING)])
        self.projects.create_index([("round_id", ASCENDING), ("organization_id", ASCENDING)])
        self.projects.create_index([("organization_id", ASCENDING), ("status", ASCENDING)])
        self.reviewers.create_index([("round_id", ASCENDING), ("reviewer", ASCENDING)])
        # One index serves every round-wide assignment query (by status, by reviewer, sorted, loads); a
        # project's assignments are found through their ids (see of_project). Each index costs a lot when an
        # assignment run inserts 25,000 documents.
        self.assignments.create_index([("round_id", ASCENDING), ("status", ASCENDING), ("reviewer", ASCENDING),
                                       ("project_id", ASCENDING)])
        self.reviews.create_index([("round_id", ASCENDING)])
        self.results.create_index([("round_id", ASCENDING), ("position", ASCENDING)])
        self.results.create_index([("round_id", ASCENDING), ("organization_id", ASCENDING), ("position", ASCENDING)])
        self.awards.create_index([("round_id", ASCENDING), ("project_id", ASCENDING)], unique=True)
        self.organizations.collection.create_index("applicant")

    # -- reads shared by commands -----------------------------------------------------------------------
    def project_assignment_ids(self, project: dict, session: ClientSession | None = None,
                               reviewers: list[dict] | None = None) -> list[str]:
        """The ids a project's assignments (and their reviews) can have: "<project>:<reviewer>" for each of its
        round's reviewers, who are never removed (`reviewers`, if the caller has read them)."""
        if reviewers is None:
            reviewers = self.reviewers.find({"round_id": project["round_id"]}, {"reviewer": 1}, session=session)
        return [domain.assignment_id(project["_id"], reviewer["reviewer"]) for reviewer in reviewers]

    @staticmethod
    def of_project(collection: Collection, ids: list[str], session: ClientSession | None = None,
                   projection: dict | None = None) -> list[dict]:
        """The documents of `collection` (assignments or reviews) with these ids, by `$in` on `_id` alone: on
        SecantusDB that is what its `_id` index serves, while an `_id` range (what this was), or `$in` with any
        other condition, reads the whole collection (25,000 assignments, 200 reviewers: 0.72 s, against 39 ms)."""
        return list(find_by_ids(collection, ids, projection, session))

    def round(self, round_id: str, session: ClientSession | None = None) -> dict:
        round_ = self.rounds.find_one({"_id": round_id}, session=session)
        if round_ is None:
            raise NotFound(f"no round {round_id}")
        return round_

    def project(self, round_id: str, project_id: str, session: ClientSession | None = None) -> dict:
        project = self.projects.find_one({"_id": project_id, "round_id": round_id}, session=session)
        if project is None:
            raise NotFound(f"no project {project_id} in round {round_id}")
        return project

    def touch_round(self, session: ClientSession, round_id: str, changes: dict | None = None) -> None:
        self.rounds.update_one({"_id": round_id}, {"$set": {"updated_at": now_utc(), **(changes or {})}},
                               session=session)

    def loads(self, round_id: str, session: ClientSession | None = None) -> dict[str, int]:
        grouped = self.assignments.aggregate([
            {"$match": {"round_id": round_id, "status": domain.ACTIVE}},
            {"$group": {"_id": "$reviewer", "load": {"$sum": 1}}},
        ], session=session)
        return {row["_id"]: row["load"] for row in grouped}

    # -- disqualification (officers, and registry events through the worker) -------------------------------
    def disqualify(self, session: ClientSession, project: dict, *, reason: str, actor: str,
                   cause: str | None = None) -> tuple[dict, Event]:
        now = now_utc()
        changes, event = domain.disqualify(project, reason=reason, actor=actor, now=now, cause=cause)
        self.projects.update_one({"_id": project["_id"]}, {"$set": changes}, session=session)
        # Its reviewers are freed: withdrawn assignments count in no load and take no score.
        assignments = self.of_project(self.assignments, self.project_assignment_ids(project, session), session,
                                      {"status": 1})
        active = [assignment["_id"] for assignment in assignments if assignment["status"] == domain.ACTIVE]
        for part in in_lists(active):
            self.assignments.update_many({"_id": {"$in": part}},
                                         {"$set": {"status": domain.WITHDRAWN, "withdrawn_at": now}}, session=session)
        self.touch_round(session, project["round_id"])
        return {**project, **changes}, event

    def disqualify_in_open_rounds(self, session: ClientSession, organization: dict, *, actor: str,
                                  cause: str | None) -> list[Event]:
        """When an organization is flagged serious or deregistered, its projects leave every open round."""
        reason = domain.exclusion_while_open(organization)
        if reason is None:
            return []
        entered = list(self.projects.find({"organization_id": organization["_id"], "status": domain.ENTERED},
                                          session=session))
        round_ids = sorted({p["round_id"] for p in entered})
        open_rounds = {r["_id"] for r in self.rounds.find({"_id": {"$in": round_ids}, "status": domain.OPEN},
                                                          {"_id": 1}, session=session)}
        return [self.disqualify(session, p, reason=reason, actor=actor, cause=cause)[1]
                for p in entered if p["round_id"] in open_rounds]

    def remember_applicant(self, session: ClientSession, organization_id: str, applicant: str) -> None:
        """Who filed an organization's application acts for it (CONTRACT, Auth)."""
        self.organizations.collection.update_one({"_id": organization_id}, {"$set": {"applicant": applicant}},
                                                 session=session)


class EvaluationStore(Collections):
    def __init__(self, ctx: ServiceContext):
        super().__init__(ctx.db)
        self.uow = ctx.uow
        self.rules = domain.Rules.from_settings(ctx.settings)
        self.ensure_indexes()

    # -- rounds -----------------------------------------------------------------------------------------------
    def create_round(self, body: dict, *, actor: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            round_ = domain.new_round(body, actor=actor, now=now_utc(), rules=self.rules)
            self.rounds.insert_one(round_, session=session)
            return round_, [domain.round_opened(round_, actor)]

        return self.uow.execute(work, idempotency=idempotency)

    def list_rounds(self, args: dict) -> dict:
        query = {name: args[name] for name in ("status", "year") if name in args}
        cursor = self.rounds.find(query).sort([("created_at", DESCENDING), ("_id", ASCENDING)])
        return page_response(cursor.skip(skip_of(args)).limit(args["per_page"]), self.rounds.count_documents(query),
                             args)

    # -- projects -------------------------------------------------------------------------------------------------
    def enter_project(self, round_id: str, body: dict, *, principal: Principal,
                      idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            round_ = self.round(round_id, session)
            organization_id = body["organization_id"]
            organization = self.organizations.get(organization_id, session)
            if not domain.acts_for(principal, organization_id, organization):
                raise Forbidden(f"applicant {principal.sub} does not act for organization {organization_id}")
            now = now_utc()
            domain.ensure_open(round_, now, "entering a project")
            refusal = domain.entry_refusal(organization, organization_id)
            if refusal:
                raise Conflict(refusal)
            project, events = domain.new_project(round_, organization, body, actor=principal.sub, now=now)
            self.projects.insert_one(project, session=session)
            self.rounds.update_one({"_id": round_id}, {"$inc": {"projects": 1}, "$set": {"updated_at": now}},
                                   session=session)
            self.organizations.collection.update_one({"_id": organization_id}, {"$inc": {"projects_entered": 1}},
                                                     session=session)
            return project, events

        return self.uow.execute(work, idempotency=idempotency)

    def visible_project(self, round_id: str, project_id: str, principal: Principal) -> dict:
        self.round(round_id)
        project = self.project(round_id, project_id)
        if principal.role == "applicant" and project["organization_id"] not in self.acted_for(principal):
            raise NotFound(f"no project {project_id} in round {round_id}")
        if principal.role == "reviewer" and self.assignments.find_one(
                {"_id": domain.assignment_id(project_id, principal.sub)}) is None:
            raise NotFound(f"no project {project_id} in round {round_id}")
        return project

    def list_projects(self, round_id: str, args: dict, principal: Principal) -> dict:
        self.round(round_id)
        query: dict = {"round_id": round_id}
        query.update({name: args[name] for name in ("status", "organization_id") if name in args})
        if principal.role == "applicant":
            mine = self.acted_for(principal)
            wanted = query.get("organization_id")
            query["organization_id"] = wanted if wanted in mine else {"$in": sorted(mine)}
        cursor = self.projects.find(query).sort("_id", ASCENDING).skip(skip_of(args)).limit(args["per_page"])
        return page_response(cursor, self.projects.count_documents(query), args)

    def acted_for(self, principal: Principal) -> set[str]:
        mine = {doc["_id"] for doc in self.organizations.collection.find({"applicant": principal.sub}, {"_id": 1})}
        return mine | ({principal.org} if principal.org else set())

    def disqualify_project(self, round_id: str, project_id: str, *, reason: str, actor: str) -> dict:
        def work(session):
            round_ = self.round(round_id, session)
            domain.ensure_not_yet_closed(round_)
            project, event = self.disqualify(session, self.project(round_id, project_id, session),
                                             reason=reason, actor=actor)
            return project, [event]

        return self.uow.execute(work)

    # -- reviewers and assignments ----------------------------------------------------------------------------
    def add_reviewer(self, round_id: str, body: dict, *, actor: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            round_ = self.round(round_id, session)
            domain.ensure_open(round_, now_utc(), "adding a reviewer")
            reviewer = domain.new_reviewer(round_, body, actor=actor, now=now_utc())
            try:
                self.reviewers.insert_one(reviewer, session=session)
            except DuplicateKeyError:
                raise Conflict(f"reviewer {body['reviewer']} is already in round {round_id}") from None
            return reviewer | {"load": 0}, [domain.reviewer_added(reviewer, actor)]

        return self.uow.execute(work, idempotency=idempotency)

    def list_reviewers(self, round_id: str, args: dict) -> dict:
        self.round(round_id)
        query = {"round_id": round_id}
        page = list(self.reviewers.find(query).sort("reviewer", ASCENDING).skip(skip_of(args)).limit(args["per_page"]))
        loads = self.loads(round_id)
        items = [reviewer | {"load": loads.get(reviewer["reviewer"], 0)} for reviewer in page]
        return page_response(items, self.reviewers.count_documents(query), args)

    def run_assignment(self, round_id: str, *, actor: str) -> dict:
        def work(session):
            round_ = self.round(round_id, session)
            now = now_utc()
            domain.ensure_open(round_, now, "assigning reviewers")
            projects = list(self.projects.find({"round_id": round_id, "status": domain.ENTERED},
                                               {"organization_id": 1, "title": 1}, session=session))
            reviewers = list(self.reviewers.find({"round_id": round_id}, session=session))
            assignments = list(self.assignments.find(
                {"round_id": round_id, "status": {"$in": [domain.ACTIVE, domain.CONFLICT]}},
                {"project_id": 1, "reviewer": 1, "status": 1, "scored": 1}, session=session))
            plan = domain.plan_assignments(round_, projects, reviewers, assignments, actor=actor, now=now)
            if plan.remove:
                # Moved assignments are deleted, not withdrawn: they were never scored, and the same pair may
                # be planned again later.
                self.assignments.delete_many({"_id": {"$in": plan.remove}}, session=session)
            if plan.add:
                self.assignments.insert_many(plan.add, session=session)
            self.touch_round(session, round_id, {"assigned_at": now, "assigned_by": actor})
            loads = list(plan.loads.values())
            summary = {"round_id": round_id, "projects": len(projects), "reviewers": len(reviewers),
                       "reviewers_per_project": round_["reviewers_per_project"],
                       "assignments": len(plan.keep) + len(plan.add), "added": len(plan.add),
                       "removed": len(plan.remove), "min_load": min(loads, default=None),
                       "max_load": max(loads, default=None)}
            return summary, [domain.assignments_made(round_id, summary, actor)]

        return self.uow.execute(work)

    def list_assignments(self, round_id: str, args: dict, principal: Principal) -> dict:
        self.round(round_id)
        reviewer = args.get("reviewer")
        if principal.role == "reviewer":
            if reviewer not in (None, principal.sub):
                raise Forbidden("a reviewer sees only its own assignments")
            reviewer = principal.sub
        query: dict = {"round_id": round_id, "status": args["status"]}
        if reviewer is not None:
            query["reviewer"] = reviewer
        cursor = self.assignments.find(query).sort([("reviewer", ASCENDING), ("project_id", ASCENDING)])
        return page_response(cursor.skip(skip_of(args)).limit(args["per_page"]),
                             self.assignments.count_documents(query), args)

    # -- scoring ------------------------------------------------------------------------------------------------
    def submit(self, round_id: str, project_id: str, body: dict, *, principal: Principal) -> dict:
        def work(session):
            round_ = self.round(round_id, session)
            project = self.project(round_id, project_id, session)
            assignment = domain.ensure_assigned(
                self.assignments.find_one({"_id": domain.assignment_id(project_id, principal.sub)}, session=session),
                principal, project_id)
            now = now_utc()
            domain.ensure_open(round_, now, "declaring a conflict" if body["conflict"] else "scoring")
            domain.ensure_scorable(project)
            self.reviewers.update_one({"_id": domain.reviewer_doc_id(round_id, principal.sub)},
                                      {"$inc": {"writes": 1}}, session=session)
            if body["conflict"]:
                return self._declare_conflict(session, round_, project, assignment, body, now=now), []
            domain.check_scores(round_["criteria"], body["scores"])
            previous = self.reviews.find_one({"_id": assignment["_id"]}, session=session)
            review = domain.review_doc(round_, assignment, body, previous=previous, now=now)
            self.reviews.replace_one({"_id": review["_id"]}, review, upsert=True, session=session)
            self.assignments.update_one({"_id": assignment["_id"]}, {"$set": {"scored": True}}, session=session)
            return review, []

        return self.uow.execute(work)

    def _declare_conflict(self, session: ClientSession, round_: dict, project: dict, assignment: dict, body: dict,
                          *, now) -> dict:
        self.reviews.delete_one({"_id": assignment["_id"]}, session=session)
        self.assignments.update_one({"_id": assignment["_id"]}, {"$set": {
            "status": domain.CONFLICT, "scored": False, "conflict_declared_at": now,
            "conflict_comment": body.get("comment", "")}}, session=session)
        reviewers = list(self.reviewers.find({"round_id": round_["_id"]}, session=session))
        ids = self.project_assignment_ids(project, reviewers=reviewers)
        already = [a["reviewer"] for a in self.of_project(self.assignments, ids, session, {"reviewer": 1})]
        replacement = domain.choose_replacement(project, reviewers, already, self.loads(round_["_id"], session))
        if replacement is not None:
            self.assignments.insert_one(domain.assignment_doc(round_, project, replacement, actor="system", now=now,
                                                              replaces=assignment["reviewer"]), session=session)
        return {"round_id": round_["_id"], "project_id": project["_id"], "reviewer": assignment["reviewer"],
                "conflict": True, "scores": None, "comment": body.get("comment", ""), "weighted_score": None,
                "updated_at": now, "replacement": replacement}

    def own_review(self, round_id: str, project_id: str, principal: Principal) -> dict:
        self.round(round_id)
        self.project(round_id, project_id)
        review = self.reviews.find_one({"_id": domain.assignment_id(project_id, principal.sub)})
        if review is None:
            raise NotFound(f"reviewer {principal.sub} has no review of project {project_id}")
        return review

    def list_reviews(self, round_id: str, project_id: str, args: dict, principal: Principal) -> dict:
        round_ = self.round(round_id)
        project = self.project(round_id, project_id)
        if principal.role == "reviewer" and round_["status"] == domain.OPEN:
            raise Forbidden("reviewers see other reviewers' scores only once the round is closed")
        # A project has a few reviews (one per assigned reviewer): all of them, then the page.
        reviews = sorted(self.of_project(self.reviews, self.project_assignment_ids(project)), key=lambda r: r["_id"])
        start = skip_of(args)
        return page_response(reviews[start:start + args["per_page"]], len(reviews), args)

    # -- closing, results, awards ------------------------------------------------------------------------------
    def close(self, round_id: str, *, actor: str) -> dict:
        def work(session):
            round_ = self.round(round_id, session)
            domain.ensure_not_yet_closed(round_)
            projects = list(self.projects.find({"round_id": round_id}, session=session))
            reviews = list(self.reviews.find({"round_id": round_id}, SCORE_INPUT, session=session))
            closing = domain.close_round(round_, projects, reviews, rules=self.rules, actor=actor, now=now_utc())
            if closing.results:
                self.results.insert_many(closing.results, session=session)
            self.rounds.update_one({"_id": round_id}, {"$set": closing.changes}, session=session)
            self.reviewers.update_many({"round_id": round_id}, {"$set": {"round_status": domain.CLOSED}},
                                       session=session)
            return round_ | closing.changes, closing.events

        return self.uow.execute(work)

    def verify(self, round_id: str) -> dict:
        round_ = self.round(round_id)
        domain.ensure_closed(round_, "verifications")
        projects = list(self.projects.find({"round_id": round_id}))
        reviews = list(self.reviews.find({"round_id": round_id}, SCORE_INPUT))
        stored = list(self.results.find({"round_id": round_id}))
        return domain.verification(round_, projects, reviews, stored, self.rules)

    def list_results(self, round_id: str, args: dict, principal: Principal) -> dict:
        round_ = self.round(round_id)
        domain.ensure_closed(round_, "results")
        query: dict = {"round_id": round_id}
        if principal.role == "applicant":
            query["organization_id"] = {"$in": sorted(self.acted_for(principal))}
        cursor = self.results.find(query).sort("position", ASCENDING).skip(skip_of(args)).limit(args["per_page"])
        return page_response(cursor, self.results.count_documents(query), args)

    def grant_awards(self, round_id: str, body: dict, *, actor: str, idempotency: IdempotencyKey | None) -> dict:
        def work(session):
            round_ = self.round(round_id, session)
            wanted = [a["project_id"] for a in body["awards"]]
            results = {r["project_id"]: r for r in self.results.find(
                {"_id": {"$in": [f"{round_id}:{p}" for p in wanted]}}, session=session)}
            organizations = {o["_id"]: o for o in self.organizations.collection.find(
                {"_id": {"$in": sorted({r["organization_id"] for r in results.values()})}}, session=session)}
            now = now_utc()
            awards, events = domain.grant_awards(round_, body["awards"], results, organizations, actor=actor, now=now)
            self.awards.insert_many(awards, session=session)
            matched = self.rounds.update_one({"_id": round_id, "status": domain.CLOSED},
                                             {"$set": {"status": domain.AWARDED, "awarded_at": now,
                                                       "awarded_by": actor, "updated_at": now}}, session=session)
            if matched.matched_count != 1:
                raise Conflict("the round changed while awards were granted; reload it")
            return {"round_id": round_id, "status": domain.AWARDED, "awards": awards}, events

        return self.uow.execute(work, idempotency=idempotency)

    def list_awards(self, round_id: str, args: dict) -> dict:
        self.round(round_id)
        query = {"round_id": round_id}
        cursor = self.awards.find(query).sort([("rank", ASCENDING), ("project_id", ASCENDING)])
        return page_response(cursor.skip(skip_of(args)).limit(args["per_page"]), self.awards.count_documents(query),
                             args)
