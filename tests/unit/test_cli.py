"""`socorg token`: a usable token, or a one-line error (status 2) for what the services would refuse or ignore."""

from __future__ import annotations

import pytest

from shared.auth import decode_token
from shared.cli import main
from shared.settings import Settings


@pytest.mark.parametrize("argv, message", [
    (["--role", "applicant", "--sub", ""], "--sub must not be empty"),
    (["--role", "applicant", "--sub", "   "], "--sub must not be empty"),
    (["--role", "officer", "--sub", "li", "--org", "org_1"], "--org is for applicant tokens only"),
    (["--role", "applicant", "--sub", "zhang", "--org", " "], "--org must not be empty"),
    (["--role", "applicant", "--sub", "zhang", "--ttl", "0"], "--ttl must be a positive number"),
    (["--role", "admin", "--sub", "x"], "invalid choice: 'admin'"),
])
def test_a_token_the_services_would_refuse_is_not_printed(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(["token", *argv])
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and "Traceback" not in err


def test_a_token_carries_what_was_asked(capsys, monkeypatch):
    monkeypatch.delenv("SOCORG_ENV", raising=False)
    assert main(["token", "--role", "applicant", "--sub", " zhang ", "--org", "org_1", "--ttl", "60"]) == 0
    token = capsys.readouterr().out.strip()
    principal = decode_token(Settings.from_env().jwt_secret, token)
    assert (principal.sub, principal.role, principal.org) == ("zhang", "applicant", "org_1")



def test_up_waits_longer_before_each_restart_of_a_child_that_keeps_exiting_at_once():
    from shared.cli import RestartSchedule

    schedule = RestartSchedule()
    assert [schedule.delay_after(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert schedule.delay_after(3600) == 1  # a child that ran a long time is restarted at once again
    assert schedule.delay_after(0.5) == 1 and schedule.delay_after(0.5) == 2
