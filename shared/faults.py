"""Named crash points for fault-injection tests.

`SOCORG_FAULTS=consumer.after_apply,relay.after_publish` makes the process die (as `kill -9` would)
the first time it reaches one of those points. Unset in every real deployment; reading one
environment variable is all it costs.
"""

import os

FAULTS_ENV = "SOCORG_FAULTS"


def point(name: str) -> None:
    armed = os.environ.get(FAULTS_ENV)
    if armed and name in armed.split(","):
        os._exit(137)
