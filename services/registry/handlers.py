"""Events the registry consumes. It publishes but consumes none yet; its worker runs the outbox relay."""

from shared.worker import WorkerSpec


def worker_spec(db, settings) -> WorkerSpec:
    return WorkerSpec(service="registry")
