"""hmxnb.runner.cli: flag combinations refused in one line, `validate` says what this machine cannot run, a full disk
names the file."""

import errno
import json
from pathlib import Path

import pytest

from hmxnb.runner.cli import main


@pytest.fixture(autouse=True)
def no_real_run(monkeypatch):
    """Whatever a test gets wrong, no notebook runs and no job is submitted: those would take minutes."""
    from hmxnb.runner import run, submit

    def started(*a, **kw):
        raise AssertionError("the command was not refused: it started a run")

    monkeypatch.setattr(run, "run_profile", started)
    monkeypatch.setattr(submit, "submit", started)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_only_with_from_is_refused(capsys, tmp_path):
    # `--only 02 --from 01` ran step 02 alone, ignoring --from without a word
    assert main(["run", "--only", "02", "--from", "01", "--outputs", str(tmp_path)]) == 2
    line = _one_line(capsys)
    assert line.startswith("hmxnb: error: --only and --from do not combine")
    assert not list(tmp_path.iterdir())  # refused before anything is written


@pytest.mark.parametrize("cmd", [["run"], ["submit", "--executor", "local", "--dry-run"]])
@pytest.mark.parametrize("outputs", ["", "  "])
def test_empty_outputs_is_refused(capsys, tmp_path, monkeypatch, cmd, outputs):
    # Path('') is '.': `--outputs ''` wrote smoke/ into the current folder
    monkeypatch.chdir(tmp_path)
    assert main([*cmd, "--outputs", outputs]) == 2
    assert _one_line(capsys).startswith("hmxnb: error: --outputs is empty")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("has_cuda", [False, True])
def test_validate_notes_a_profile_that_needs_a_gpu(capsys, monkeypatch, has_cuda):
    """A 4-bit profile is valid anywhere (exit 0: checked on a login node before `submit`), but on a machine
    without CUDA `validate` says in one line that `run` would stop; it said nothing."""
    from hmxnb import models

    monkeypatch.setattr(models, "cuda_available", lambda: has_cuda)
    assert main(["validate", "--profile", "colab-t4"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["load_in_4bit"] is True  # stdout stays the params JSON
    if has_cuda:
        assert out.err == ""
    else:
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("note: profile 'colab-t4' needs a CUDA GPU"), out.err


def test_validate_shows_the_sweep_member_names(capsys):
    assert main(["validate", "--set", "sweep_models=[Qwen/Qwen3-0.6B, unsloth/Qwen3-0.6B]",
                 "--set", "seeds=[0]"]) == 0
    members = json.loads(capsys.readouterr().out)["sweep_members"]
    assert members == ["qwen-qwen3-0.6b-seed0", "unsloth-qwen3-0.6b-seed0"]
    assert main(["validate", "--set", "seeds=[1, 1]"]) == 2
    assert _one_line(capsys).startswith("hmxnb: error: seeds lists 1 more than once")


def test_a_full_disk_names_the_file(capsys, monkeypatch, tmp_path):
    """write() on a full disk raises 'No space left on device' with no file name; the error line names it."""
    from hmxnb.runner import run
    from hmxnb.artifacts import save_json

    def full(self, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr(run, "main_run", lambda args: save_json({}, tmp_path / "smoke" / "run.json") and 0)
    assert main(["run"]) == 2
    assert _one_line(capsys) == f"hmxnb: error: No space left on device: {tmp_path / 'smoke' / 'run.json'}"


def _jupyterlab(monkeypatch, tmp_path, importable: bool) -> list:
    """An activated venv: its bin/ first on PATH, holding a `jupyter` command (jupyter_core's, which papermill and
    nbconvert bring) whether or not JupyterLab is installed; `importable`: whether this interpreter has jupyterlab.
    Returns the commands `lab` would have started (none is started)."""
    import importlib.machinery
    import subprocess
    import sys
    import types

    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "jupyter").write_text("#!/bin/sh\nexit 1\n")
    (venv_bin / "jupyter").chmod(0o755)
    monkeypatch.setenv("VIRTUAL_ENV", str(venv_bin.parent))
    monkeypatch.setenv("PATH", f"{venv_bin}:{__import__('os').environ['PATH']}")
    lab = types.ModuleType("jupyterlab")
    lab.__spec__ = importlib.machinery.ModuleSpec("jupyterlab", None)
    monkeypatch.setitem(sys.modules, "jupyterlab", lab if importable else None)  # None: find_spec finds none
    started = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, *a, **kw: started.append(cmd) or 0)
    return started


def test_lab_without_jupyterlab_prints_the_install_hint_in_an_activated_venv(capsys, monkeypatch, tmp_path):
    """The venv's own `jupyter` command on PATH hid the hint: `lab` started `python -m jupyterlab`, which failed
    with 'No module named jupyterlab'."""
    started = _jupyterlab(monkeypatch, tmp_path, importable=False)
    assert main(["lab"]) == 2
    line = _one_line(capsys)
    assert line.startswith("hmxnb: error: JupyterLab is not installed") and "[notebook]" in line
    assert started == []


def test_lab_with_jupyterlab_starts_it_with_this_interpreter(capsys, monkeypatch, tmp_path):
    import sys

    started = _jupyterlab(monkeypatch, tmp_path, importable=True)
    assert main(["lab"]) == 0
    assert [cmd[:3] for cmd in started] == [[sys.executable, "-m", "jupyterlab"]]
    assert capsys.readouterr().err == ""
