"""The three aggregations of DOMAIN.md against examples worked out by hand (the working is in the comments)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.evaluation.scoring import (INSUFFICIENT, RANKED, Criterion, Review, ScoringRules, results, to_cents,
                                         weighted_score, weighted_scores)

D = Decimal
# One criterion of weight 1 out of 100: a review's weighted score is its score, so examples stay readable.
PLAIN = [Criterion("overall", D(1), D(100))]


def reviews(table: dict[str, dict[str, float]]) -> list[Review]:
    """{project: {reviewer: weighted score}} -> reviews."""
    return [Review(project, reviewer, D(str(score))) for project, by_reviewer in table.items()
            for reviewer, score in by_reviewer.items()]


def by_project(listed):
    return {r.project_id: r for r in listed}


class TestWeightedScore:
    # quality: weight 0.6 out of 10, impact: weight 0.4 out of 5 -> 100 x (0.6 q / 10 + 0.4 i / 5) = 6q + 8i
    CRITERIA = [Criterion("quality", D("0.6"), D(10)), Criterion("impact", D("0.4"), D(5))]

    @pytest.mark.parametrize("quality, impact, expected", [
        (7, 3, "66.00"),  # 42 + 24
        (10, 5, "100.00"),
        (0, 0, "0.00"),
        (7.5, 2, "61.00"),  # 45 + 16
        (3.3, 1.7, "33.40"),  # 19.8 + 13.6
    ])
    def test_definition(self, quality, impact, expected):
        assert to_cents(weighted_score(self.CRITERIA, {"quality": quality, "impact": impact})) == D(expected)
        assert to_cents(weighted_scores(self.CRITERIA, [{"quality": quality, "impact": impact}])[0]) == D(expected)

    def test_thirds_that_add_up_exactly_are_exact(self):
        # 100 x (0.5 x 1/3 + 0.5 x 2/3) = 50 exactly, though 1/3 and 2/3 have no finite decimal form.
        thirds = [Criterion("a", D("0.5"), D(3)), Criterion("b", D("0.5"), D(3))]
        assert to_cents(weighted_score(thirds, {"a": 1, "b": 2})) == D("50.00")
        assert to_cents(weighted_score(thirds, {"a": 1, "b": 1})) == D("33.33")  # 33.333...

    def test_a_half_cent_reached_through_a_third_rounds_up(self):
        # 100 x 0.00015 / 3 = 0.005 exactly: half up gives 0.01, although the 60-digit quotient is 0.00499...9.
        third = [Criterion("a", D(1), D(3))]
        assert to_cents(weighted_score(third, {"a": 0.00015})) == D("0.01")


class TestMean:
    rules = ScoringRules("mean", reviewers_per_project=3)

    def test_average_rounded_half_up(self):
        listed = by_project(results(["p1", "p2", "p3"], reviews({
            "p1": {"a": 66, "b": 80, "c": 50},  # 196 / 3 = 65.333... -> 65.33
            "p2": {"a": 80.01, "b": 80, "c": 80},  # 240.01 / 3 = 80.00333... -> 80.00
            "p3": {"a": 80.01, "b": 80.00},  # 80.005 exactly: half up -> 80.01 (half even would give 80.00)
        }), self.rules))
        assert listed["p1"].score == D("65.33")
        assert listed["p2"].score == D("80.00")
        assert listed["p3"].score == D("80.01")
        assert [listed[p].rank for p in ("p3", "p2", "p1")] == [1, 2, 3]

    def test_ties_share_a_rank_and_the_next_rank_is_skipped(self):
        listed = results(["d", "c", "b", "a"], reviews({
            "a": {"x": 90, "y": 90},
            "b": {"x": 80, "y": 80},
            "c": {"x": 70, "y": 90},  # also 80
            "d": {"x": 70, "y": 70},
        }), ScoringRules("mean", reviewers_per_project=2))
        assert [(r.project_id, r.rank) for r in listed] == [("a", 1), ("b", 2), ("c", 2), ("d", 4)]

    def test_ties_are_judged_on_the_rounded_score(self):
        # 80.001 and 80.004 both publish as 80.00, so they must share the rank a reader sees.
        listed = by_project(results(["a", "b"], reviews({"a": {"x": 80.001}, "b": {"x": 80.004}}),
                                    ScoringRules("mean", reviewers_per_project=1)))
        assert listed["a"].score == listed["b"].score == D("80.00")
        assert listed["a"].rank == listed["b"].rank == 1


class TestTrimmedMean:
    rules = ScoringRules("trimmed_mean", reviewers_per_project=5)

    def test_five_reviews_drop_one_highest_and_one_lowest(self):
        listed = by_project(results(["p"], reviews({"p": {"a": 10, "b": 50, "c": 60, "d": 70, "e": 100}}),
                                    self.rules))
        assert listed["p"].score == D("60.00")  # (50 + 60 + 70) / 3

    def test_four_reviews_are_simply_averaged(self):
        listed = by_project(results(["p"], reviews({"p": {"a": 10, "b": 50, "c": 60, "d": 100}}), self.rules))
        assert listed["p"].score == D("55.00")  # 220 / 4, nothing dropped

    def test_only_one_of_equal_extremes_is_dropped(self):
        listed = by_project(results(["p"], reviews({"p": {"a": 10, "b": 10, "c": 40, "d": 90, "e": 90}}),
                                    self.rules))
        assert listed["p"].score == D("46.67")  # (10 + 40 + 90) / 3 = 46.666...

    def test_threshold_is_a_rule(self):
        rules = ScoringRules("trimmed_mean", reviewers_per_project=4, trim_min_reviews=4)
        listed = by_project(results(["p"], reviews({"p": {"a": 10, "b": 50, "c": 60, "d": 100}}), rules))
        assert listed["p"].score == D("55.00")  # (50 + 60) / 2


class TestZScore:
    rules = ScoringRules("zscore", reviewers_per_project=3)

    def test_standardised_per_reviewer_with_a_reviewer_whose_scores_are_all_equal(self):
        # r1: 90, 70 -> mean 80, sd 10 -> z +1, -1.  r2: 60, 60 -> sd 0 -> z 0, 0.  r3: 100, 60 -> mean 80, sd 20.
        # p1 z = (1 + 0 + 1) / 3 = 2/3, p2 z = -2/3.
        # All six scores 90 70 60 60 100 60: M = 440/6 = 220/3; mean of squares 33800/6; variance
        # 33800/6 - (220/3)^2 = 2300/9, so S = sqrt(2300)/3 = 15.986105...
        # p1 = 220/3 + 2/3 x 15.986105 = 73.333333 + 10.657403 = 83.990737 -> 83.99; p2 = 62.675930 -> 62.68.
        listed = by_project(results(["p1", "p2"], reviews({
            "p1": {"r1": 90, "r2": 60, "r3": 100},
            "p2": {"r1": 70, "r2": 60, "r3": 60},
        }), self.rules))
        assert listed["p1"].score == D("83.99") and listed["p1"].rank == 1
        assert listed["p2"].score == D("62.68") and listed["p2"].rank == 2

    def test_clipped_to_0_and_100(self):
        # r1: 100, 0, 0, 0 -> mean 25, sd sqrt(1875) = 25 sqrt 3: z(p1) = sqrt 3, z(others) = -1/sqrt 3.
        # r2: 100, 100 -> sd 0 -> z 0.  All scores 100 0 0 0 100 100: M = 50, S = 50.
        # p1 = 50 + 50 sqrt 3 = 136.6 -> 100.00;  p2..p4 = 50 - 50/sqrt 3 = 21.1325 -> 21.13;  p5, p6 = 50.00.
        listed = by_project(results([f"p{i}" for i in range(1, 7)], reviews({
            "p1": {"r1": 100}, "p2": {"r1": 0}, "p3": {"r1": 0}, "p4": {"r1": 0},
            "p5": {"r2": 100}, "p6": {"r2": 100},
        }), ScoringRules("zscore", reviewers_per_project=1)))
        assert listed["p1"].score == D("100.00")
        assert {listed[p].score for p in ("p2", "p3", "p4")} == {D("21.13")}
        assert {listed[p].score for p in ("p5", "p6")} == {D("50.00")}
        # Mirror image: the low end clips to 0.
        low = by_project(results([f"p{i}" for i in range(1, 7)], reviews({
            "p1": {"r1": 0}, "p2": {"r1": 100}, "p3": {"r1": 100}, "p4": {"r1": 100},
            "p5": {"r2": 0}, "p6": {"r2": 0},
        }), ScoringRules("zscore", reviewers_per_project=1)))
        assert low["p1"].score == D("0.00")
        assert low["p2"].score == D("78.87")  # 50 + 50/sqrt 3 = 78.8675

    def test_a_lenient_reviewer_does_not_lift_its_projects(self):
        # r1 scores everything 30 points higher than r2 would; z-scores remove the offset: equal ranks.
        listed = by_project(results(["a", "b", "c", "d"], reviews({
            "a": {"r1": 95}, "b": {"r1": 75}, "c": {"r2": 65}, "d": {"r2": 45},
        }), ScoringRules("zscore", reviewers_per_project=1)))
        assert listed["a"].score == listed["c"].score and listed["a"].rank == listed["c"].rank == 1
        assert listed["b"].score == listed["d"].score and listed["b"].rank == listed["d"].rank == 3


class TestUnrankedAndSpread:
    def test_fewer_than_half_of_reviewers_per_project_rounded_up_is_insufficient(self):
        # reviewers_per_project 5 -> at least ceil(2.5) = 3 reviews.
        listed = by_project(results(["two", "three", "none"], reviews({
            "two": {"a": 90, "b": 90}, "three": {"a": 50, "b": 50, "c": 50},
        }), ScoringRules("mean", reviewers_per_project=5)))
        assert (listed["two"].status, listed["two"].rank, listed["two"].score) == (INSUFFICIENT, None, D("90.00"))
        assert (listed["three"].status, listed["three"].rank) == (RANKED, 1)
        assert (listed["none"].status, listed["none"].score, listed["none"].reviews) == (INSUFFICIENT, None, 0)

    def test_even_reviewers_per_project(self):
        listed = by_project(results(["one", "two"], reviews({"one": {"a": 1}, "two": {"a": 1, "b": 1}}),
                                    ScoringRules("mean", reviewers_per_project=4)))
        assert listed["one"].status == INSUFFICIENT and listed["two"].status == RANKED  # ceil(2) = 2

    def test_unranked_projects_are_listed_after_ranked_ones(self):
        # reviewers_per_project 3 -> at least 2 reviews: a (one high review) and b (none) stay unranked.
        listed = results(["a", "b", "c"], reviews({"a": {"x": 99}, "c": {"x": 10, "y": 10}}),
                         ScoringRules("mean", reviewers_per_project=3))
        assert [r.project_id for r in listed] == ["c", "a", "b"]

    def test_spread_and_disagreement(self):
        listed = by_project(results(["split", "agreed"], reviews({
            "split": {"a": 20, "b": 80},  # sd 30
            "agreed": {"a": 70, "b": 72, "c": 74},  # sd sqrt(8/3) = 1.63
        }), ScoringRules("mean", reviewers_per_project=2, disagreement_sd=D(15))))
        split, agreed = listed["split"], listed["agreed"]
        assert (split.spread.sd, split.spread.min, split.spread.max) == (D("30.00"), D("20.00"), D("80.00"))
        assert split.disagreement is True
        assert (agreed.spread.sd, agreed.spread.min, agreed.spread.max) == (D("1.63"), D("70.00"), D("74.00"))
        assert agreed.disagreement is False

    def test_same_inputs_in_any_order_give_the_same_results(self):
        table = {f"p{i}": {f"r{j}": (i * 37 + j * 11) % 101 for j in range(4)} for i in range(30)}
        forward = reviews(table)
        for aggregation in ("mean", "trimmed_mean", "zscore"):
            rules = ScoringRules(aggregation, reviewers_per_project=4)
            first = results(list(table), forward, rules)
            again = results(list(reversed(list(table))), list(reversed(forward)), rules)
            assert first == again
