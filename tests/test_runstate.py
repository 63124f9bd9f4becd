"""hmxnb.runstate: one runner per profile folder (real processes), records true at every moment, history appended."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hmxnb import run as runner
from hmxnb.run import run_profile
from test_run import WRITE, _notebook, nbdir  # noqa: F401  (nbdir: the same two-notebook fixture)


def _run(nbdir, out, **kw):
    return run_profile("smoke", notebooks_dir=nbdir, output_root=out, progress=False, log=lambda line: None, **kw)[0]


def _record(out):
    return json.loads((out / "smoke" / "run.json").read_text())


def _history(out):
    return [json.loads(line) for line in (out / "smoke" / "history.jsonl").read_text().splitlines()]


RUNNER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from hmxnb.__main__ import main
    import hmxnb.run as run

    def main_run(args):
        reports = run.run_profile("smoke", notebooks_dir=Path(sys.argv[1]), output_root=Path(sys.argv[2]), progress=False)
        return 0 if all(r.ok for r in reports) else 1

    run.main_run = main_run
    sys.exit(main(["run"]))
""")


def test_second_runner_on_the_same_profile_is_refused(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir / "01_slow.ipynb", "import pathlib, time\nwith open(pathlib.Path(out_dir, 'samples.jsonl'), 'a') as f:\n"
                                       "    f.write('{}\\n')\ntime.sleep(4)")
    script, out = tmp_path / "runner.py", tmp_path / "outputs"
    script.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, str(script), str(nbdir), str(out)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    step = out / "smoke" / "01_slow" / "step.json"
    deadline = time.time() + 60
    while not (step.is_file() and '"running"' in step.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0
    assert "IPKernelApp" not in first_err  # the kernel's own log (on Ctrl-C: a zmq traceback) goes to kernel.log
    assert (out / "smoke" / "01_slow" / "kernel.log").is_file()
    assert second.returncode == 2, second.stderr
    assert "in use by another runner" in second.stderr and f"pid {first.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert (out / "smoke" / "01_slow" / "samples.jsonl").read_text() == "{}\n"  # written once, by the first runner


def test_record_is_true_while_a_step_runs(nbdir, tmp_path, monkeypatch):
    seen = []

    def fake_execute(notebook, out_nb, parameters, progress, env=None):
        seen.append({s["step"]: s["status"] for s in _record(tmp_path / "out")["steps"]})

    monkeypatch.setattr(runner, "_execute", fake_execute)
    _run(nbdir, tmp_path / "out")
    assert seen == [{"01_first": "running", "02_second": "missing"}, {"01_first": "ok", "02_second": "running"}]
    assert _record(tmp_path / "out")["status"] == "ok"


def test_interrupt_and_force_archive_leave_no_stale_ok(nbdir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "_execute", lambda *a: None)
    _run(nbdir, out)
    assert _record(out)["status"] == "ok"

    def ctrl_c(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_execute", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _run(nbdir, out, force=True)  # 01 archived, then Ctrl-C while it re-runs
    rec = _record(out)
    assert rec["status"] == "interrupted"
    assert [(s["step"], s["status"]) for s in rec["steps"]] == [("01_first", "interrupted"), ("02_second", "ok")]
    assert _history(out)[-1]["status"] == "interrupted" and _history(out)[-1]["steps"][0]["status"] == "interrupted"


def test_killed_runner_reads_interrupted(nbdir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "_execute", lambda *a: None)
    _run(nbdir, out, only=["01"])
    step = out / "smoke" / "01_first" / "step.json"
    killed = {**json.loads(step.read_text()), "status": "running", "pid": 999999999}  # as a kill -9 leaves it
    step.write_text(json.dumps(killed))
    _run(nbdir, out, only=["02"])
    assert [(s["step"], s["status"]) for s in _record(out)["steps"]] == [("01_first", "interrupted"), ("02_second", "ok")]


def test_partial_and_failed_runs_keep_the_record_of_the_complete_run(nbdir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(runner, "_execute", lambda *a: None)
    _run(nbdir, out)
    _run(nbdir, out, only=["02"], force=True)  # a partial run
    assert _record(out)["status"] == "ok" and [s["status"] for s in _record(out)["steps"]] == ["ok", "ok"]

    def boom(*a):
        raise ValueError("rubric exploded")

    monkeypatch.setattr(runner, "_execute", boom)
    _run(nbdir, out, only=["02"], force=True)  # a failed partial run
    assert [s["status"] for s in _record(out)["steps"]] == ["ok", "failed"] and _record(out)["status"] == "failed"
    assert [h["status"] for h in _history(out)] == ["ok", "ok", "failed"]  # appended, never overwritten
    assert [s["step"] for s in _history(out)[1]["steps"]] == ["02_second"]
