"""The Makefile: `make clean` keeps users' runs; another torch build means another install."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _dry(*args):
    return subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def test_clean_keeps_runs():
    out = _dry("clean", "VENV=/nonexistent/venv")
    assert "/nonexistent/venv" in out and "runs" not in out


def test_the_install_stamp_follows_the_torch_choice(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    first = _dry("install", f"VENV={venv}")
    assert "pip install -q torch==2.13.0" in first
    stamp = [line for line in first.splitlines() if line.startswith("touch ")][-1].split()[-1]
    Path(stamp).touch()  # installed with the default torch
    assert "pip install" not in _dry("install", f"VENV={venv}")
    other = _dry("install", f"VENV={venv}", "TORCH=torch==2.13.0 --index-url https://example.invalid/cu126")
    assert "pip install -q torch==2.13.0 --index-url https://example.invalid/cu126" in other
