"""`socorg replay` when the database does not answer: a one-line error and exit status 1."""

from __future__ import annotations

from shared.cli import main


def test_replay_without_a_database_says_so_in_one_line(capsys, monkeypatch):
    from shared.infra import free_port

    monkeypatch.delenv("SOCORG_ENV", raising=False)
    monkeypatch.setenv("MONGODB_URI", f"mongodb://127.0.0.1:{free_port()}")  # nothing listens there
    assert main(["replay", "registry"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("socorg: replay of registry stopped, MongoDB did not answer") and "Traceback" not in err
