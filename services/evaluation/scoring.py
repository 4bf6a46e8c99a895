"""A round's results, exactly as ../shared/DOMAIN.md ("Brand-project award") defines them. Pure: no I/O.

Arithmetic is `Decimal` with 60 significant digits. Before the final half-up rounding to cents every value
is snapped to 30 decimals, so a value that is exactly on a half cent in exact arithmetic (70.125) but came
out a hair below it after a non-terminating division (70.12499...9) still rounds up, as the rule says.

- A review's weighted score = 100 x sum(weight x score / max_score).
- `mean`: the average of a project's weighted scores. `trimmed_mean`: from `trim_min_reviews` reviews
  on, one highest and one lowest are dropped first. `zscore`: every review is standardised against its
  reviewer's scores in the round (population sd, z = 0 when that sd is 0); the project's z is the mean
  of its reviews' z and its score is M + S x z clipped to 0..100 (M, S: mean and population sd of every
  weighted score in the round).
- A project with fewer reviews than `ceil(min_reviews_share x reviewers_per_project)` is
  `insufficient_reviews` and unranked. Ranked projects sort by score, ties share a rank (1, 2, 2, 4),
  and equal ranks are listed by project id, so the same inputs always give the same list.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Iterable, Mapping, Sequence

PRECISION = 60
SNAP = Decimal("1e-30")
CENT = Decimal("0.01")
ZERO, HUNDRED = Decimal(0), Decimal(100)

MEAN, TRIMMED_MEAN, ZSCORE = "mean", "trimmed_mean", "zscore"
AGGREGATIONS = (MEAN, TRIMMED_MEAN, ZSCORE)
RANKED, INSUFFICIENT = "ranked", "insufficient_reviews"


@dataclass(frozen=True)
class Criterion:
    key: str
    weight: Decimal
    max_score: Decimal


@dataclass(frozen=True)
class Review:
    project_id: str
    reviewer: str
    weighted: Decimal  # unrounded weighted score, 0..100


@dataclass(frozen=True)
class ScoringRules:
    aggregation: str
    reviewers_per_project: int
    trim_min_reviews: int = 5
    min_reviews_share: Decimal = Decimal("0.5")
    disagreement_sd: Decimal = Decimal(15)

    @property
    def min_reviews(self) -> int:
        """Fewer reviews than this leave a project unranked (half of reviewers_per_project, rounded up)."""
        return math.ceil(Fraction(self.min_reviews_share) * self.reviewers_per_project)


@dataclass(frozen=True)
class Spread:
    sd: Decimal
    min: Decimal
    max: Decimal


@dataclass(frozen=True)
class ProjectResult:
    project_id: str
    score: Decimal | None  # rounded to cents; None without any review
    rank: int | None
    reviews: int
    status: str  # ranked | insufficient_reviews
    spread: Spread | None
    disagreement: bool


def decimal_of(number: int | float | str | Decimal) -> Decimal:
    """The decimal a client wrote: 7.3 arrives as the float nearest 7.3, and its repr is "7.3" again."""
    if isinstance(number, Decimal):
        return number
    if isinstance(number, float):
        return Decimal(repr(number))
    return Decimal(number)


def to_cents(value: Decimal) -> Decimal:
    """Round half up to 2 decimals, after snapping off arithmetic noise far below a cent."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return value.quantize(SNAP, rounding=ROUND_HALF_EVEN).quantize(CENT, rounding=ROUND_HALF_UP)


def criteria_of(raw: Iterable[Mapping]) -> list[Criterion]:
    return [Criterion(c["key"], decimal_of(c["weight"]), decimal_of(c["max_score"])) for c in raw]


def weighted_score(criteria: Sequence[Criterion], scores: Mapping[str, int | float]) -> Decimal:
    """100 x sum(weight x score / max_score), unrounded."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return sum((c.weight * decimal_of(scores[c.key]) / c.max_score for c in criteria), ZERO) * HUNDRED


def weighted_scores(criteria: Sequence[Criterion], many_scores: Iterable[Mapping[str, int | float]]) -> list[Decimal]:
    """`weighted_score` of many reviews at once: each criterion's factor 100 x weight / max_score is worked out
    once (with 60 digits, far below the cent results are rounded to), in one decimal context."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        factors = [(c.key, HUNDRED * c.weight / c.max_score) for c in criteria]
        decimals: dict = {}  # scores take few distinct values: convert each once (8 and 8.0 share an entry)
        totals = []
        for scores in many_scores:
            total = ZERO
            for key, factor in factors:
                value = scores[key]
                exact = decimals.get(value)
                if exact is None:
                    exact = decimals[value] = decimal_of(value)
                total += factor * exact
            totals.append(total)
        return totals


# -- statistics ---------------------------------------------------------------------------------------
def mean(values: Sequence[Decimal]) -> Decimal:
    return sum(values, ZERO) / len(values)


def mean_and_sd(values: Sequence[Decimal]) -> tuple[Decimal, Decimal]:
    """Mean and population standard deviation."""
    average = mean(values)
    variance = sum(((v - average) ** 2 for v in values), ZERO) / len(values)
    return average, variance.sqrt()


def trimmed_mean(values: Sequence[Decimal], trim_min_reviews: int) -> Decimal:
    if len(values) >= trim_min_reviews:
        values = sorted(values)[1:-1]
    return mean(values)


def clip(value: Decimal, low: Decimal = ZERO, high: Decimal = HUNDRED) -> Decimal:
    return max(low, min(high, value))


# -- aggregation ----------------------------------------------------------------------------------------
def aggregate(reviews: Sequence[Review], rules: ScoringRules) -> dict[str, Decimal]:
    """Each reviewed project's unrounded score under the round's aggregation."""
    by_project = _weighted_by_project(reviews)
    if rules.aggregation == MEAN:
        return {project: mean(values) for project, values in by_project.items()}
    if rules.aggregation == TRIMMED_MEAN:
        return {project: trimmed_mean(values, rules.trim_min_reviews) for project, values in by_project.items()}
    if rules.aggregation == ZSCORE:
        return zscore_scores(reviews)
    raise ValueError(f"unknown aggregation {rules.aggregation!r}")


def zscore_scores(reviews: Sequence[Review]) -> dict[str, Decimal]:
    if not reviews:
        return {}
    per_reviewer: dict[str, list[Decimal]] = defaultdict(list)
    for review in reviews:
        per_reviewer[review.reviewer].append(review.weighted)
    reviewer_stats = {reviewer: mean_and_sd(values) for reviewer, values in per_reviewer.items()}
    round_mean, round_sd = mean_and_sd([review.weighted for review in reviews])
    z_by_project: dict[str, list[Decimal]] = defaultdict(list)
    for review in reviews:
        reviewer_mean, reviewer_sd = reviewer_stats[review.reviewer]
        z = (review.weighted - reviewer_mean) / reviewer_sd if reviewer_sd else ZERO
        z_by_project[review.project_id].append(z)
    return {project: clip(round_mean + round_sd * mean(zs)) for project, zs in z_by_project.items()}


def spread_of(values: Sequence[Decimal]) -> Spread | None:
    if not values:
        return None
    _, sd = mean_and_sd(values)
    return Spread(sd=to_cents(sd), min=to_cents(min(values)), max=to_cents(max(values)))


def results(project_ids: Iterable[str], reviews: Sequence[Review], rules: ScoringRules) -> list[ProjectResult]:
    """Every project's result, in the order results are listed: ranked ones by rank then project id,
    then the insufficiently reviewed ones by project id. Reviews of other projects are ignored."""
    project_ids = sorted(set(project_ids))
    wanted = set(project_ids)
    reviews = [review for review in reviews if review.project_id in wanted]
    with localcontext() as ctx:
        ctx.prec = PRECISION
        scores = aggregate(reviews, rules)
        by_project = _weighted_by_project(reviews)
        min_reviews = rules.min_reviews
        unranked: list[ProjectResult] = []
        ranked: list[tuple[Decimal, str, int, Spread | None, bool]] = []
        for project in project_ids:
            values = by_project.get(project, [])
            spread = spread_of(values)
            disagreement = len(values) >= 2 and spread is not None and spread.sd >= rules.disagreement_sd
            score = to_cents(scores[project]) if project in scores else None
            if len(values) < min_reviews or score is None:
                unranked.append(ProjectResult(project, score, None, len(values), INSUFFICIENT, spread, disagreement))
            else:
                ranked.append((score, project, len(values), spread, disagreement))
    ranked.sort(key=lambda item: (-item[0], item[1]))
    listed = []
    previous_score, previous_rank = None, 0
    for position, (score, project, count, spread, disagreement) in enumerate(ranked, start=1):
        rank = previous_rank if score == previous_score else position
        listed.append(ProjectResult(project, score, rank, count, RANKED, spread, disagreement))
        previous_score, previous_rank = score, rank
    return listed + unranked


def _weighted_by_project(reviews: Sequence[Review]) -> dict[str, list[Decimal]]:
    grouped: dict[str, list[Decimal]] = defaultdict(list)
    for review in reviews:
        grouped[review.project_id].append(review.weighted)
    return grouped
