"""Evaluation rules that need no storage: round definitions, deadlines, score checks, replacements after a
conflict, the inputs digest, award checks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from marshmallow import ValidationError

from services.evaluation import domain
from services.evaluation.schemas import AwardRequestSchema, RoundCreateSchema, ScoreSubmissionSchema
from shared.errors import Conflict, ValidationFailed

NOW = datetime(2026, 6, 1, 4, 0, tzinfo=timezone.utc)
RULES = domain.Rules()
CRITERIA = [{"key": "quality", "label": "质量", "weight": 0.6, "max_score": 10},
            {"key": "impact", "label": "影响", "weight": 0.4, "max_score": 5}]


def round_body(**overrides):
    return {"name": "评选", "year": 2026, "criteria": CRITERIA, "aggregation": "mean", "reviewers_per_project": 3,
            "closes_at": datetime(2026, 10, 31, 17, 0)} | overrides


class TestRounds:
    def test_weights_must_sum_to_exactly_one_in_decimal(self):
        thirds = [{"key": k, "label": k, "weight": w, "max_score": 10}
                  for k, w in (("a", 0.1), ("b", 0.2), ("c", 0.7))]
        assert domain.new_round(round_body(criteria=thirds), actor="li", now=NOW, rules=RULES)["status"] == "open"
        with pytest.raises(ValidationFailed, match="weights must sum to 1; they sum to 0.9"):
            domain.new_round(round_body(criteria=thirds[:2] + [thirds[2] | {"weight": 0.6}]), actor="li", now=NOW,
                             rules=RULES)

    def test_criterion_keys_are_unique(self):
        with pytest.raises(ValidationFailed, match="repeated: quality"):
            domain.new_round(round_body(criteria=[CRITERIA[0], CRITERIA[0] | {"weight": 0.4}]), actor="li", now=NOW,
                             rules=RULES)

    def test_a_deadline_without_offset_is_shanghai_time(self):
        round_ = domain.new_round(round_body(closes_at=datetime(2026, 10, 31, 17, 0)), actor="li", now=NOW,
                                  rules=RULES)
        assert round_["closes_at"] == datetime(2026, 10, 31, 9, 0, tzinfo=timezone.utc)

    def test_a_date_alone_means_the_end_of_that_day(self):
        loaded = RoundCreateSchema().load(round_body(closes_at="2026-10-31") | {"criteria": CRITERIA})
        round_ = domain.new_round(loaded, actor="li", now=NOW, rules=RULES)
        assert round_["closes_at"] == datetime(2026, 10, 31, 15, 59, 59, 999000, tzinfo=timezone.utc)

    def test_the_deadline_must_be_in_the_future(self):
        with pytest.raises(ValidationFailed, match="closes_at: must be in the future"):
            domain.new_round(round_body(closes_at=NOW - timedelta(seconds=1)), actor="li", now=NOW, rules=RULES)

    def test_every_broken_rule_of_a_round_is_named_at_once(self):
        repeated_and_short = [CRITERIA[0], CRITERIA[0] | {"weight": 0.1}]
        with pytest.raises(ValidationFailed) as raised:
            domain.new_round(round_body(criteria=repeated_and_short, closes_at=NOW - timedelta(days=1)), actor="li",
                             now=NOW, rules=RULES)
        assert set(raised.value.errors) == {"criteria", "closes_at"}
        assert len(raised.value.errors["criteria"]) == 2  # the repeated key and the weights' sum
        assert all(name in raised.value.detail for name in ("criteria:", "closes_at:"))

    def test_nothing_changes_after_the_deadline_or_the_close(self):
        round_ = domain.new_round(round_body(), actor="li", now=NOW, rules=RULES)
        domain.ensure_open(round_, round_["closes_at"], "scoring")  # up to the deadline itself
        with pytest.raises(Conflict, match="stopped accepting changes"):
            domain.ensure_open(round_, round_["closes_at"] + timedelta(milliseconds=1), "scoring")
        with pytest.raises(Conflict, match="the round is closed"):
            domain.ensure_open(round_ | {"status": "closed"}, NOW, "scoring")

    def test_blank_names_are_refused(self):
        with pytest.raises(ValidationError) as refused:
            RoundCreateSchema().load(round_body(name="   ", closes_at="2026-10-31"))
        assert "name" in refused.value.messages
        with pytest.raises(ValidationError):
            AwardRequestSchema().load({"project_id": "p", "tier": " ", "prize_fen": 1})


class TestScores:
    def test_every_criterion_in_range_and_nothing_else(self):
        domain.check_scores(CRITERIA, {"quality": 10, "impact": 0})
        with pytest.raises(ValidationFailed) as refused:
            domain.check_scores(CRITERIA, {"quality": 10.5, "budget": 1})
        assert refused.value.errors == {"scores.quality": ["must be between 0 and 10"],
                                        "scores.impact": ["missing: every criterion must be scored"],
                                        "scores.budget": ["not a criterion of this round"]}

    def test_scores_or_a_conflict(self):
        assert ScoreSubmissionSchema().load({"conflict": True})["conflict"] is True
        for body in ({}, {"scores": {"quality": 1}, "conflict": True}, {"scores": {"quality": "1"}}):
            with pytest.raises(ValidationError):
                ScoreSubmissionSchema().load(body)
        assert ScoreSubmissionSchema().load({"scores": {"quality": 7}})["scores"] == {"quality": 7}


class TestConflicts:
    REVIEWERS = [{"reviewer": name, "affiliations": affiliations}
                 for name, affiliations in (("a", []), ("b", ["org_1"]), ("c", []), ("d", []))]

    def test_the_least_loaded_free_reviewer_replaces(self):
        project = {"_id": "p", "organization_id": "org_1"}
        assert domain.choose_replacement(project, self.REVIEWERS, ["a"], {"c": 3, "d": 2}) == "d"
        assert domain.choose_replacement(project, self.REVIEWERS, ["a"], {"c": 2, "d": 2}) == "c"  # ties: by id
        assert domain.choose_replacement(project, self.REVIEWERS, ["a", "c", "d"], {}) is None  # b is affiliated


class TestDigest:
    ROUND = {"_id": "rnd", "aggregation": "mean", "reviewers_per_project": 2, "criteria": CRITERIA}
    PROJECTS = [{"_id": "p1", "organization_id": "o1", "status": "entered"},
                {"_id": "p2", "organization_id": "o2", "status": "entered"}]
    REVIEWS = [{"project_id": "p1", "reviewer": "a", "scores": {"quality": 8, "impact": 3.5}},
               {"project_id": "p2", "reviewer": "a", "scores": {"quality": 6, "impact": 2}}]

    def test_order_and_number_spelling_do_not_matter(self):
        digest = domain.inputs_digest(self.ROUND, self.PROJECTS, self.REVIEWS, RULES)
        respelled = [self.REVIEWS[1], self.REVIEWS[0] | {"scores": {"impact": 3.50, "quality": 8.0}}]
        assert domain.inputs_digest(self.ROUND, self.PROJECTS[::-1], respelled, RULES) == digest

    def test_every_input_matters(self):
        digest = domain.inputs_digest(self.ROUND, self.PROJECTS, self.REVIEWS, RULES)
        changed = [
            domain.inputs_digest(self.ROUND, self.PROJECTS,
                                 [self.REVIEWS[0] | {"scores": {"quality": 8, "impact": 3.6}}, self.REVIEWS[1]], RULES),
            domain.inputs_digest(self.ROUND, self.PROJECTS, self.REVIEWS[:1], RULES),
            domain.inputs_digest(self.ROUND | {"aggregation": "zscore"}, self.PROJECTS, self.REVIEWS, RULES),
            domain.inputs_digest(self.ROUND, [self.PROJECTS[0], self.PROJECTS[1] | {"status": "disqualified"}],
                                 self.REVIEWS, RULES),
            domain.inputs_digest(self.ROUND, self.PROJECTS, self.REVIEWS, domain.Rules(trim_min_reviews=4)),
        ]
        assert digest not in changed and len(set(changed)) == len(changed)

    def test_close_counts_only_entered_projects(self):
        projects = [self.PROJECTS[0], self.PROJECTS[1] | {"status": "disqualified", "title": "t2"}]
        projects[0] = projects[0] | {"title": "t1"}
        closing = domain.close_round(self.ROUND | {"name": "r", "year": 2026, "status": "open"}, projects,
                                     self.REVIEWS, rules=RULES, actor="li", now=NOW)
        assert [(r["project_id"], r["status"], r["score"]) for r in closing.results] == [
            ("p1", "ranked", 76.0),  # 6 x 8 + 8 x 3.5
            ("p2", "disqualified", None)]
        assert closing.changes["summary"]["reviews"] == 1
        [event] = closing.events
        assert (event.type, event.key, event.data["actor"]) == ("evaluation.round.closed", "rnd", "li")


class TestAwards:
    ROUND = {"_id": "rnd", "year": 2026, "status": "closed"}
    RESULTS = {"p1": {"project_id": "p1", "organization_id": "o1", "title": "t", "rank": 1, "score": 90.0,
                      "status": "ranked"},
               "p2": {"project_id": "p2", "organization_id": "o2", "title": "t", "rank": None, "score": None,
                      "status": "insufficient_reviews"}}
    ORGANIZATIONS = {"o1": {"_id": "o1", "status": "registered", "risk": "none"}}

    def grant(self, requested, organizations=None, round_=None):
        return domain.grant_awards(round_ or self.ROUND, requested, self.RESULTS,
                                   self.ORGANIZATIONS if organizations is None else organizations,
                                   actor="li", now=NOW)

    def test_an_award_event_carries_what_the_fund_needs(self):
        awards, [event] = self.grant([{"project_id": "p1", "tier": "一等奖", "prize_fen": 500, "fund_id": "f"}])
        assert (event.type, event.key, event.subject) == ("evaluation.award.granted", "p1", "p1")
        assert event.data == {"actor": "li", "award_id": awards[0]["_id"], "round_id": "rnd", "year": 2026,
                              "project_id": "p1", "organization_id": "o1", "title": "t", "tier": "一等奖",
                              "prize_fen": 500, "fund_id": "f"}

    def test_refusals(self):
        with pytest.raises(Conflict, match="insufficient_reviews"):
            self.grant([{"project_id": "p2", "tier": "x", "prize_fen": 1}])
        with pytest.raises(Conflict, match="serious risk list"):
            self.grant([{"project_id": "p1", "tier": "x", "prize_fen": 1}],
                       {"o1": {"_id": "o1", "status": "registered", "risk": "serious"}})
        with pytest.raises(Conflict, match="deregistered"):
            self.grant([{"project_id": "p1", "tier": "x", "prize_fen": 1}],
                       {"o1": {"_id": "o1", "status": "deregistered", "risk": "none"}})
        with pytest.raises(ValidationFailed, match="repeated: p1"):
            self.grant([{"project_id": "p1", "tier": "x", "prize_fen": 1}] * 2)
        with pytest.raises(Conflict, match="still open"):
            self.grant([{"project_id": "p1", "tier": "x", "prize_fen": 1}], round_=self.ROUND | {"status": "open"})
        with pytest.raises(Conflict, match="already granted"):
            self.grant([{"project_id": "p1", "tier": "x", "prize_fen": 1}], round_=self.ROUND | {"status": "awarded"})
