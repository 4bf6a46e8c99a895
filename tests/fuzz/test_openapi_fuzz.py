"""schemathesis against each service's own OpenAPI document, every operation, on the real stack.

Each operation gets at least 100 generated requests that fit its documented schema (positive examples), sent
with valid tokens of every role in turn (applicant acting for a seeded organization, reviewer assigned in the
seeded round, officer: a third of the examples each, so the suite stays short), plus requests that break the schema (negative examples, sent as an officer). Path ids
are sometimes swapped for ids of real seeded resources, so requests reach real organizations, rounds, funds
and grants, not only 404s. Every response must: not be a 5xx, carry a documented status and content type,
match the documented schema and headers, and never show a stack trace.

Generation is derandomized (a fixed seed), so a run is repeatable. The counts go to
test-artifacts/fuzz/summary.txt and to the end of the pytest report.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from tests.security.world import seed
from tests.support.stack import SERVICES, Stack

POSITIVE_EXAMPLES = 100  # per operation, the roles taking turns
NEGATIVE_EXAMPLES = 30  # per operation that has anything to break besides a free-form path id
ROLES = ("applicant", "reviewer", "officer")
SUMMARY = Path(__file__).resolve().parents[2] / "test-artifacts" / "fuzz" / "summary.txt"
# One test per service runs thousands of requests: about a minute on an idle 2-core machine, several when other
# work shares it. The suite's 300 s per test is meant to catch hangs; this one gets more room.
pytestmark = [pytest.mark.timeout(1200), pytest.mark.slow]


def no_stack_trace(ctx, response, case):
    """A response never shows a stack trace (CONTRACT.md, Errors)."""
    text = response.text or ""
    if "Traceback (most recent call last)" in text or 'File "/' in text:
        raise AssertionError("the response shows a stack trace")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, no_stack_trace]


def hypothesis_settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                    report_multiple_bugs=True)


@dataclass
class Tally:
    """What ran, per service."""

    operations: int = 0
    positive: Counter = field(default_factory=Counter)  # operation label -> examples
    negative: Counter = field(default_factory=Counter)
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    without_negative: list[str] = field(default_factory=list)  # nothing to break but a free-form id
    seconds: float = 0.0


@pytest.fixture(scope="module")
def seeded(servers):
    stack = Stack(servers)
    _, seeds = seed(stack)
    yield stack, seeds
    stack.close()


@pytest.fixture(scope="module")
def tallies():
    tallies: dict[str, Tally] = {}
    yield tallies
    # One file per service: with parallel test workers each service's test may run in another process.
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    for service, tally in tallies.items():
        (SUMMARY.parent / f"{service}.txt").write_text(summary_text({service: tally}), encoding="utf-8")


def summary_text(tallies: dict[str, Tally]) -> str:
    lines = [f"schemathesis {schemathesis.__version__}, derandomized; positive examples are sent with the roles "
             f"taking turns ({', '.join(ROLES)}), negative ones as an officer"]
    for service, tally in tallies.items():
        positive, negative = sum(tally.positive.values()), sum(tally.negative.values())
        fewest = min(tally.positive.values()) if tally.positive else 0
        lines.append(f"{service}: {tally.operations} operations, {positive} positive examples (at least {fewest} per "
                     f"operation), {negative} negative examples, {tally.requests} requests in {tally.seconds:.0f} s; statuses "
                     + ", ".join(f"{status}: {n}" for status, n in sorted(tally.statuses.items())))
        if tally.without_negative:
            lines.append(f"  no negative examples possible (only a free-form path id): {', '.join(tally.without_negative)}")
    return "\n".join(lines) + "\n"


def real_ids(seeds, parameters: list[str]) -> st.SearchStrategy[dict]:
    """For each path parameter with seeded ids: None (keep the generated value) or one of the real ids."""
    return st.fixed_dictionaries({name: st.one_of(st.none(), st.sampled_from(seeds.ids[name]))
                                  for name in parameters if seeds.ids.get(name)})


def use_real_ids(case, chosen: dict, organization: str | None) -> None:
    for name, value in chosen.items():
        if value is not None:
            case.path_parameters[name] = value
    if organization is not None and isinstance(case.body, dict) and "organization_id" in case.body:
        case.body["organization_id"] = organization


def role_tokens(stack, seeds) -> dict[str, str]:
    a = seeds.organizations["a"]
    reviewer = seeds.open_round.reviewer_of[seeds.open_round.projects[0]]
    return {"applicant": stack.token("applicant", sub=a.filer, org=a.id),
            "reviewer": stack.token("reviewer", sub=reviewer),
            "officer": stack.token("officer", sub="officer-fuzz")}


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_answers_as_documented(seeded, tallies, service):
    stack, seeds = seeded
    schema = schemathesis.openapi.from_wsgi("/openapi.json", stack.app(service))
    tokens = role_tokens(stack, seeds)
    tally = tallies[service] = Tally()
    failures: list[str] = []
    started = time.monotonic()

    def send(case, role: str):
        headers = {"Authorization": f"Bearer {tokens[role]}"}
        response = case.call(headers=headers)
        tally.requests += 1
        tally.statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    for result in schema.get_all_operations():
        operation = result.ok()
        tally.operations += 1
        parameters = [parameter.name for parameter in operation.path_parameters]
        seeded_organizations = st.one_of(st.none(), st.sampled_from(seeds.ids["organization_id"]))

        @hypothesis_settings(POSITIVE_EXAMPLES)
        @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
               chosen=real_ids(seeds, parameters), organization=seeded_organizations)
        def positive(case, chosen, organization):
            use_real_ids(case, chosen, organization)
            role = ROLES[tally.positive[operation.label] % len(ROLES)]
            tally.positive[operation.label] += 1
            send(case, role)

        @hypothesis_settings(NEGATIVE_EXAMPLES)
        @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        def negative(case):
            tally.negative[operation.label] += 1
            send(case, "officer")

        for run in (positive, negative):
            try:
                run()
            except Unsatisfiable:
                if run is positive:
                    raise
                tally.without_negative.append(operation.label)  # only a free-form string path id: nothing to break
            except BaseException as error:  # noqa: BLE001 - collect every operation's failures, then fail
                if isinstance(error, (KeyboardInterrupt, SystemExit)):
                    raise
                failures.append(f"{operation.label} ({run.__name__}): {error}")

    tally.seconds = time.monotonic() - started
    print(summary_text({service: tally}))
    assert failures == [], "\n\n".join(failures)
    assert tally.operations >= 19
    assert min(tally.positive.values()) >= POSITIVE_EXAMPLES, tally.positive
    assert len(tally.positive) == tally.operations
