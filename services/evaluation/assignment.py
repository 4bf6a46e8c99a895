"""Automatic assignment of reviewers to projects. Pure: no I/O.

The problem is a bipartite b-matching: every project needs `per_project` distinct reviewers, never one
affiliated with its organization (nor one who declared a conflict on it), and every reviewer's load must
lie in [L, U] with L = floor(total / reviewers), U = ceil(total / reviewers), which is exactly "loads
differ by at most one".

It is solved exactly, and fast when conflicts are sparse:
1. start from the current assignments that may stay (the cheapest change for people already reviewing);
2. fill the rest greedily, least-recently-served reviewer first, never above U;
3. complete every project still short by augmenting paths (a full reviewer hands one of its projects to
   another reviewer, and so on, until one with room is reached): max-flow, so when no path is left no
   assignment with loads <= U covers every project;
4. lift every reviewer below L by alternating paths (it takes a project from another reviewer, who takes
   one from another, until one above L gives one up). By flow decomposition such a path exists whenever a
   balanced assignment exists, so failing here proves it does not.
Assignments in `fixed` (already scored) are never moved. Everything is deterministic: reviewers and
projects are processed in id order.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Iterable, Mapping

SAMPLE = 5  # how many names an explanation lists


class AssignmentImpossible(Exception):
    """No assignment satisfies the rules; the message says why."""


@dataclass(frozen=True)
class Bounds:
    lower: int
    upper: int


def balanced_bounds(total: int, reviewers: int) -> Bounds:
    return Bounds(total // reviewers, math.ceil(total / reviewers))


def assign(projects: Mapping[str, str], reviewers: Mapping[str, Iterable[str]], per_project: int, *,
           fixed: Mapping[str, Iterable[str]] | None = None,
           current: Mapping[str, Iterable[str]] | None = None,
           excluded: Mapping[str, Iterable[str]] | None = None) -> dict[str, list[str]]:
    """Assign `per_project` reviewers to every project.

    projects: project id -> organization id; reviewers: reviewer -> organization ids it is affiliated with;
    fixed: project -> reviewers that must stay (their reviews exist); current: project -> reviewers kept
    where the rules allow; excluded: project -> reviewers that must never review it (declared conflicts).
    Returns project -> sorted reviewers (fixed ones included). Raises AssignmentImpossible.
    """
    return _Planner(projects, reviewers, per_project, fixed or {}, current or {}, excluded or {}).solve()


class _Planner:
    def __init__(self, projects, reviewers, per_project, fixed, current, excluded):
        self.per_project = per_project
        self.project_ids = sorted(projects)
        self.organization = dict(projects)
        self.reviewer_ids = sorted(reviewers)
        self.affiliations = {r: frozenset(orgs) for r, orgs in reviewers.items()}
        self.excluded = {p: frozenset(rs) for p, rs in excluded.items()}
        self.fixed = {p: set(fixed.get(p, ())) & set(self.reviewer_ids) for p in self.project_ids}
        self.current = current
        self.assigned: dict[str, set[str]] = {p: set(self.fixed[p]) for p in self.project_ids}
        self.held: dict[str, set[str]] = {r: set() for r in self.reviewer_ids}  # movable assignments only
        self.load: dict[str, int] = {r: 0 for r in self.reviewer_ids}
        for reviewers_of_project in self.fixed.values():
            for reviewer in reviewers_of_project:
                self.load[reviewer] += 1
        self.bounds = Bounds(0, 0)

    # -- rules ----------------------------------------------------------------------------------------
    def may_review(self, reviewer: str, project: str) -> bool:
        return (self.organization[project] not in self.affiliations[reviewer]
                and reviewer not in self.excluded.get(project, ()))

    def can_take(self, reviewer: str, project: str) -> bool:
        return reviewer not in self.assigned[project] and self.may_review(reviewer, project)

    def short(self, project: str) -> int:
        return self.per_project - len(self.assigned[project])

    def give(self, reviewer: str, project: str) -> None:
        self.assigned[project].add(reviewer)
        self.held[reviewer].add(project)
        self.load[reviewer] += 1

    def take_back(self, reviewer: str, project: str) -> None:
        self.assigned[project].discard(reviewer)
        self.held[reviewer].discard(project)
        self.load[reviewer] -= 1

    # -- the plan ---------------------------------------------------------------------------------------
    def solve(self) -> dict[str, list[str]]:
        if not self.project_ids:
            return {}
        self.check_possible_at_all()
        self.bounds = balanced_bounds(len(self.project_ids) * self.per_project, len(self.reviewer_ids))
        self.check_fixed_loads()
        self.keep_current()
        self.fill_greedily()
        self.complete_short_projects()
        self.lift_light_reviewers()
        return {p: sorted(self.assigned[p]) for p in self.project_ids}

    def check_possible_at_all(self) -> None:
        count = len(self.reviewer_ids)
        if count < self.per_project:
            raise AssignmentImpossible(f"every project needs {_reviewers(self.per_project)} but the round has "
                                       f"{count}")
        affiliated: dict[str, set[str]] = {}
        for reviewer, organizations in self.affiliations.items():
            for organization in organizations:
                affiliated.setdefault(organization, set()).add(reviewer)
        for project in self.project_ids:
            barred = affiliated.get(self.organization[project], set()) | self.excluded.get(project, frozenset())
            allowed = count - len((barred & set(self.reviewer_ids)) - self.fixed[project])
            if allowed < self.per_project:
                raise AssignmentImpossible(
                    f"project {project} needs {_reviewers(self.per_project)} but only {allowed} of the round's "
                    f"{count} reviewers are neither affiliated with its organization "
                    f"{self.organization[project]} nor in declared conflict with it")

    def check_fixed_loads(self) -> None:
        over = [r for r in self.reviewer_ids if self.load[r] > self.bounds.upper]
        if over:
            raise AssignmentImpossible(
                f"reviewers {_names(over)} already scored more projects than the balanced maximum of "
                f"{self.bounds.upper}, so loads cannot be kept within one of each other")

    def keep_current(self) -> None:
        for project in self.project_ids:
            for reviewer in sorted(self.current.get(project, ())):
                if (reviewer in self.load and self.short(project) > 0 and self.can_take(reviewer, project)
                        and self.load[reviewer] < self.bounds.upper):
                    self.give(reviewer, project)

    def fill_greedily(self) -> None:
        """Round-robin over reviewers with room, lightest first: almost always the whole answer."""
        queue = OrderedDict((r, None) for r in sorted(self.reviewer_ids, key=lambda r: (self.load[r], r))
                            if self.load[r] < self.bounds.upper)
        for project in self.project_ids:
            needed = self.short(project)
            if needed <= 0:
                continue
            chosen = []
            for reviewer in queue:
                if self.can_take(reviewer, project):
                    chosen.append(reviewer)
                    if len(chosen) == needed:
                        break
            for reviewer in chosen:
                self.give(reviewer, project)
                if self.load[reviewer] >= self.bounds.upper:
                    del queue[reviewer]
                else:
                    queue.move_to_end(reviewer)

    def complete_short_projects(self) -> None:
        progress = True
        while progress:
            progress = False
            for project in self.project_ids:
                while self.short(project) > 0 and self.augment(project):
                    progress = True
        short = [p for p in self.project_ids if self.short(p) > 0]
        if short:
            raise AssignmentImpossible(
                f"projects {_names(short)} cannot all get {_reviewers(self.per_project)} while every reviewer "
                f"keeps at most {self.bounds.upper} projects (loads within one of each other): the reviewers "
                f"free to review them are too few")

    def augment(self, project: str) -> bool:
        """Give `project` one more reviewer, passing projects along a chain of full reviewers if needed."""
        upper = self.bounds.upper
        parent: dict[str, tuple[str, str] | None] = {}
        queue = deque()
        for reviewer in self.reviewer_ids:
            if self.can_take(reviewer, project):
                if self.load[reviewer] < upper:
                    self.give(reviewer, project)
                    return True
                parent[reviewer] = None
                queue.append(reviewer)
        unvisited = [r for r in self.reviewer_ids if r not in parent]
        while queue and unvisited:
            full = queue.popleft()
            handed_over = sorted(self.held[full])
            remaining = []
            for candidate in unvisited:
                moved = next((q for q in handed_over if self.can_take(candidate, q)), None)
                if moved is None:
                    remaining.append(candidate)
                    continue
                parent[candidate] = (full, moved)
                if self.load[candidate] < upper:
                    self._apply_chain(project, candidate, parent)
                    return True
                queue.append(candidate)
            unvisited = remaining
        return False

    def _apply_chain(self, project: str, last: str, parent: dict) -> None:
        """Walk back from `last`: each reviewer takes the project its predecessor hands over."""
        reviewer = last
        while parent[reviewer] is not None:
            previous, moved = parent[reviewer]
            self.take_back(previous, moved)
            self.give(reviewer, moved)
            reviewer = previous
        self.give(reviewer, project)

    def lift_light_reviewers(self) -> None:
        for reviewer in self.reviewer_ids:
            while self.load[reviewer] < self.bounds.lower:
                if not self.lift(reviewer):
                    raise AssignmentImpossible(
                        f"reviewer {reviewer} cannot be given the balanced minimum of {self.bounds.lower} "
                        f"projects: it is affiliated with (or in declared conflict with) the organizations of "
                        f"too many projects for loads to stay within one of each other")

    def lift(self, light: str) -> bool:
        """Give `light` one more project, taken from a reviewer above the minimum (maybe along a chain)."""
        lower = self.bounds.lower
        parent: dict[str, tuple[str, str] | None] = {light: None}
        queue = deque([light])
        while queue:
            taker = queue.popleft()
            for project in self.project_ids:
                if not self.can_take(taker, project):
                    continue
                for giver in sorted(r for r in self.assigned[project] if project in self.held[r]):
                    if giver in parent:
                        continue
                    parent[giver] = (taker, project)
                    if self.load[giver] > lower:
                        self._apply_lift(giver, parent)
                        return True
                    queue.append(giver)
        return False

    def _apply_lift(self, giver: str, parent: dict) -> None:
        while parent[giver] is not None:
            taker, project = parent[giver]
            self.take_back(giver, project)
            self.give(taker, project)
            giver = taker


def loads_of(plan: Mapping[str, Iterable[str]], reviewers: Iterable[str]) -> dict[str, int]:
    loads = {r: 0 for r in reviewers}
    for assigned in plan.values():
        for reviewer in assigned:
            loads[reviewer] = loads.get(reviewer, 0) + 1
    return loads


def _reviewers(count: int) -> str:
    return f"{count} reviewer" + ("" if count == 1 else "s")


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SAMPLE])
    return shown + (f" and {len(items) - SAMPLE} more" if len(items) > SAMPLE else "")
