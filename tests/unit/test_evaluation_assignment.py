"""Automatic assignment over random inputs: never a conflicted reviewer, loads within one, every project
covered whenever some assignment could do it (checked against exhaustive search on small rounds)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.evaluation.assignment import AssignmentImpossible, assign, loads_of


@st.composite
def rounds(draw, max_projects=6, max_reviewers=6, max_orgs=4):
    organizations = [f"o{i}" for i in range(draw(st.integers(1, max_orgs)))]
    projects = {f"p{i}": draw(st.sampled_from(organizations))
                for i in range(draw(st.integers(0, max_projects)))}
    reviewers = {f"r{i}": draw(st.frozensets(st.sampled_from(organizations), max_size=len(organizations)))
                 for i in range(draw(st.integers(1, max_reviewers)))}
    per_project = draw(st.integers(1, 3))
    return projects, reviewers, per_project


def allowed(projects, reviewers, excluded=None):
    excluded = excluded or {}
    return {p: [r for r in sorted(reviewers) if org not in reviewers[r] and r not in excluded.get(p, ())]
            for p, org in projects.items()}


def check_valid(plan, projects, reviewers, per_project, *, fixed=None, excluded=None):
    fixed, excluded = fixed or {}, excluded or {}
    assert set(plan) == set(projects)
    for project, assigned in plan.items():
        assert len(assigned) == per_project and len(set(assigned)) == per_project, (project, assigned)
        for reviewer in assigned:
            assert reviewer in reviewers
            assert reviewer in fixed.get(project, ()) or projects[project] not in reviewers[reviewer], \
                f"{reviewer} is affiliated with {project}'s organization"
            assert reviewer not in excluded.get(project, ()), f"{reviewer} declared a conflict on {project}"
        assert set(fixed.get(project, ())) <= set(assigned), "a scored assignment moved"
    if plan:
        loads = loads_of(plan, reviewers).values()
        assert max(loads) - min(loads) <= 1, sorted(loads)


def exists_balanced(projects, reviewers, per_project, *, fixed=None, excluded=None) -> bool:
    """Exhaustive search: is there any assignment satisfying every rule?"""
    fixed = fixed or {}
    choices = []
    free = allowed(projects, reviewers, excluded)
    for project in sorted(projects):
        kept = set(fixed.get(project, ()))
        options = [kept | set(extra) for extra in
                   itertools.combinations([r for r in free[project] if r not in kept], per_project - len(kept))]
        if not options:
            return False
        choices.append(options)
    for combination in itertools.product(*choices):
        loads = {r: 0 for r in reviewers}
        for assigned in combination:
            for reviewer in assigned:
                loads[reviewer] += 1
        if max(loads.values()) - min(loads.values()) <= 1:
            return True
    return not projects


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(max_projects=4, max_reviewers=5))
def test_assigns_exactly_when_an_assignment_exists(case):
    projects, reviewers, per_project = case
    possible = exists_balanced(projects, reviewers, per_project)
    try:
        plan = assign(projects, reviewers, per_project)
    except AssignmentImpossible as exc:
        assert not possible, f"an assignment exists but assign() refused: {exc}"
        assert str(exc)
        return
    assert possible or not projects
    check_valid(plan, projects, reviewers, per_project)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds(max_projects=4, max_reviewers=5), st.randoms(use_true_random=False))
def test_scored_assignments_stay_and_declared_conflicts_are_respected(case, rnd):
    projects, reviewers, per_project = case
    free = allowed(projects, reviewers)
    fixed = {p: rnd.sample(rs, min(len(rs), rnd.randint(0, per_project))) for p, rs in free.items()}
    excluded = {p: [r for r in free[p] if r not in fixed[p] and rnd.random() < 0.3] for p in projects}
    current = {p: rnd.sample(sorted(reviewers), min(len(reviewers), per_project)) for p in projects}
    possible = exists_balanced(projects, reviewers, per_project, fixed=fixed, excluded=excluded)
    try:
        plan = assign(projects, reviewers, per_project, fixed=fixed, current=current, excluded=excluded)
    except AssignmentImpossible:
        assert not possible
        return
    check_valid(plan, projects, reviewers, per_project, fixed=fixed, excluded=excluded)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 80), st.integers(1, 25), st.integers(1, 5), st.randoms(use_true_random=False))
def test_larger_rounds_are_covered_whenever_an_assignment_exists(n_projects, n_reviewers, per_project, rnd):
    # Plant a balanced assignment, then affiliate reviewers only with organizations of projects they do not
    # review in it: an assignment exists by construction, so assign() must find one (maybe another).
    per_project = min(per_project, n_reviewers)
    organizations = [f"o{i}" for i in range(rnd.randint(1, 30))]
    projects = {f"p{i:03d}": rnd.choice(organizations) for i in range(n_projects)}
    order = rnd.sample([f"r{i:02d}" for i in range(n_reviewers)], n_reviewers)
    planted = {p: {order[(i * per_project + j) % n_reviewers] for j in range(per_project)}
               for i, p in enumerate(sorted(projects))}
    reviewing = {r: {projects[p] for p, rs in planted.items() if r in rs} for r in order}
    reviewers = {r: frozenset(o for o in organizations if o not in reviewing[r] and rnd.random() < 0.5)
                 for r in order}
    check_valid(planted, projects, reviewers, per_project)  # the plant itself is valid
    plan = assign(projects, reviewers, per_project)
    check_valid(plan, projects, reviewers, per_project)


def test_keeps_current_assignments_that_are_still_balanced():
    projects = {f"p{i}": "o" for i in range(6)}
    reviewers = {"a": (), "b": (), "c": ()}
    first = assign(projects, reviewers, 2)
    again = assign(projects, reviewers, 2, current=first)
    assert again == first
    # A fourth reviewer joins: 12 slots over 4 reviewers is 3 each; most current assignments stay.
    reviewers["d"] = ()
    rebalanced = assign(projects, reviewers, 2, current=first)
    check_valid(rebalanced, projects, reviewers, 2)
    kept = sum(len(set(first[p]) & set(rebalanced[p])) for p in projects)
    assert kept >= 12 - 4 and loads_of(rebalanced, reviewers)["d"] == 3


def test_impossible_rounds_say_why():
    with pytest.raises(AssignmentImpossible, match="needs 3 reviewers but the round has 2"):
        assign({"p": "o"}, {"a": (), "b": ()}, 3)
    with pytest.raises(AssignmentImpossible, match="project p needs 2 reviewers but only 1"):
        assign({"p": "o"}, {"a": ("o",), "b": ()}, 2)
    # Two reviewers cannot take two projects each when each may take at most one (loads 1..1).
    with pytest.raises(AssignmentImpossible, match="cannot all get 1 reviewer while every reviewer keeps at most 1"):
        assign({"p": "o1", "q": "o2"}, {"a": ("o1", "o2"), "b": ()}, 1)
    # Four projects over three reviewers is 1 or 2 each: b and c can cover everything, but a, affiliated with
    # every organization, cannot get its minimum of one.
    with pytest.raises(AssignmentImpossible, match="reviewer a cannot be given the balanced minimum of 1"):
        assign({"p": "o1", "q": "o1", "s": "o2", "t": "o2"}, {"a": ("o1", "o2"), "b": (), "c": ()}, 1)


def test_no_projects_no_assignments():
    assert assign({}, {"a": ()}, 2) == {}


def test_deterministic():
    rnd = random.Random(7)
    projects = {f"p{i}": f"o{rnd.randrange(20)}" for i in range(200)}
    reviewers = {f"r{i}": frozenset(f"o{rnd.randrange(20)}" for _ in range(2)) for i in range(15)}
    assert assign(projects, reviewers, 3) == assign(dict(reversed(projects.items())), reviewers, 3)
