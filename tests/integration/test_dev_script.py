"""`./dev`, the README's two commands: it passes shellcheck, and with a Python older than 3.11 it says so
before creating anything."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELLCHECK = Path(sys.executable).with_name("shellcheck")


def test_dev_and_the_scripts_pass_shellcheck():
    scripts = [ROOT / "dev", *sorted((ROOT / "scripts").glob("*.sh"))]
    result = subprocess.run([str(SHELLCHECK), *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_with_an_old_python_dev_says_which_is_needed_and_creates_nothing(tmp_path):
    shutil.copy(ROOT / "dev", tmp_path / "dev")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\n[ "$1" = "--version" ] && echo "Python 3.9.2" && exit 0\nexit 1\n')
    old.chmod(0o755)
    result = subprocess.run([str(tmp_path / "dev"), "up"], env={"PATH": "/usr/bin:/bin", "PYTHON": str(old)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "socorg needs Python 3.11 or newer" in result.stderr and "Python 3.9.2" in result.stderr
    assert not (tmp_path / ".venv").exists()
