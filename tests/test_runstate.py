"""hmxnb.runner.runstate: one runner per profile folder (real processes), records true at every moment, history
appended."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hmxnb.runner import runsteps as runner  # where the step loop calls papermill (`_execute`)
from hmxnb.runner.run import run_profile
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
    from hmxnb.runner.cli import main
    import hmxnb.runner.run as run

    def main_run(args):
        reports = run.run_profile("smoke", notebooks_dir=Path(sys.argv[1]), output_root=Path(sys.argv[2]),
                                  progress=False)
        return 0 if all(r.ok for r in reports) else 1

    run.main_run = main_run
    sys.exit(main(["run"]))
""")


def test_second_runner_on_the_same_profile_is_refused(tmp_path):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _notebook(nbdir / "01_slow.ipynb", "import pathlib, time\n"
                                       "with open(pathlib.Path(out_dir, 'samples.jsonl'), 'a') as f:\n"
                                       "    f.write('{}\\n')\ntime.sleep(4)")
    script, out = tmp_path / "runner.py", tmp_path / "outputs"
    script.write_text(RUNNER)
    env = _cli_env()
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
    steps = [(s["step"], s["status"]) for s in _record(out)["steps"]]
    assert steps == [("01_first", "interrupted"), ("02_second", "ok")]


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


# ---------------------------------------------------------------- stop signals (issue 22)

CLI = textwrap.dedent("""
    # `python -m hmxnb run --outputs OUT ...` on the stand-in notebooks in NBDIR: the real CLI, main_run included
    import sys
    import hmxnb.runner.run as run
    from hmxnb.runner.cli import main

    real = run.run_profile
    run.run_profile = lambda *a, **kw: real(*a, **{**kw, "progress": False})
    sys.exit(main(["run", "--notebooks", sys.argv[1], "--outputs", sys.argv[2], *sys.argv[3:]]))
""")

RESUMABLE = ("import os, pathlib, time\npid = pathlib.Path(out_dir, 'kernel.pid')\n"
             "if pid.is_file():\n    pathlib.Path(out_dir, 'resumed').write_text('yes')\n"
             "else:\n    pid.write_text(str(os.getpid()))\n    time.sleep(120)")
SLOW = ("import os, pathlib, time\npathlib.Path(out_dir, 'kernel.pid').write_text(str(os.getpid()))\n"
        "time.sleep(120)")


def _cli_env():
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.is_file() and time.time() < deadline:
        time.sleep(0.1)
    assert path.is_file(), f"{path} never appeared"


def test_sigterm_ends_the_runner_with_true_records(tmp_path):
    """`kill -TERM` (timeout, SLURM's time limit) while a step runs: the kernel is stopped, the step reads
    'interrupted' in step.json and run.json, a history line is written, and the exit status is 143 (128 + 15, what
    a shell reports for SIGTERM). Before: records said 'running' and no history line."""
    import signal

    nbdir, out = tmp_path / "notebooks", tmp_path / "outputs"
    nbdir.mkdir()
    _notebook(nbdir / "01_first.ipynb", WRITE)
    _notebook(nbdir / "02_slow.ipynb", RESUMABLE)
    (tmp_path / "cli.py").write_text(CLI)
    cli = [sys.executable, str(tmp_path / "cli.py"), str(nbdir), str(out)]
    runner_proc = subprocess.Popen([*cli, "--force"], env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
    _wait_for(out / "smoke" / "02_slow" / "kernel.pid")
    kernel = int((out / "smoke" / "02_slow" / "kernel.pid").read_text())
    runner_proc.send_signal(signal.SIGTERM)
    _, err = runner_proc.communicate(timeout=30)
    assert runner_proc.returncode == 143, err
    assert err.strip().splitlines() == [  # the command that continues: without --force, which would start afresh
        "hmxnb: stopped by SIGTERM; finished steps are kept and the step that ran is marked 'interrupted' in run.json; "
        "to continue it (training resumes from its last complete checkpoint): python -m hmxnb run --notebooks "
        f"{nbdir} --outputs {out}"]
    step = json.loads((out / "smoke" / "02_slow" / "step.json").read_text())
    assert step["status"] == "interrupted" and step["pid"] == runner_proc.pid
    assert [(s["step"], s["status"]) for s in _record(out)["steps"]] == [("01_first", "ok"), ("02_slow", "interrupted")]
    assert _record(out)["status"] == "interrupted"
    last = _history(out)[-1]
    assert last["status"] == "interrupted" and [s["status"] for s in last["steps"]] == ["ok", "interrupted"]
    deadline = time.time() + 10
    while _alive(kernel) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(kernel), "the kernel outlived the runner"
    assert last["steps"][-1]["seconds"] > 0.5  # the interrupted step's time until the signal (was 0.0 s)

    again = subprocess.run(cli, env=_cli_env(), capture_output=True, text=True, timeout=120)  # what the message said
    assert again.returncode == 0, again.stderr
    assert (out / "smoke" / "02_slow" / "resumed").is_file()  # continued in place: the kernel saw its earlier files
    assert not (out / "smoke" / "_archive").exists()  # nothing archived (with --force it would have been)


def test_a_stop_signal_in_process_is_an_interrupt_and_the_handlers_come_back(nbdir, tmp_path, monkeypatch):
    """The runner as a library: SIGTERM during a step raises hmxnb.runner.stop.Stopped (a KeyboardInterrupt) with the
    records written, and the caller's own SIGTERM handler is back afterwards."""
    import signal

    from hmxnb.runner.stop import Stopped

    def terminated(*a):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends

    mine = signal.signal(signal.SIGTERM, lambda *a: None)
    try:
        caller = signal.getsignal(signal.SIGTERM)
        monkeypatch.setattr(runner, "_execute", terminated)
        with pytest.raises(Stopped) as stop:
            _run(nbdir, tmp_path / "out")
        assert stop.value.exit_status == 143 and signal.getsignal(signal.SIGTERM) is caller
    finally:
        signal.signal(signal.SIGTERM, mine)
    assert [s["status"] for s in _record(tmp_path / "out")["steps"]] == ["interrupted", "missing"]
    assert _history(tmp_path / "out")[-1]["status"] == "interrupted"


def test_a_stop_signal_waits_for_records_being_written_and_a_second_one_is_ignored():
    import signal

    from hmxnb.runner.stop import Stopped, held, stop_on_signals

    seen = []
    with pytest.raises(Stopped):
        with stop_on_signals():
            with held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                seen.append("records written")
            seen.append("not reached")
    assert seen == ["records written"]
    with stop_on_signals():
        with pytest.raises(Stopped):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)  # during the first one's clean-up: ignored
        time.sleep(0.05)


def test_a_full_disk_leaves_no_record_or_report_claiming_more_than_is_true(tmp_path, monkeypatch):
    """No space left: run.json cannot be rewritten, so the old one (which may say 'ok') is removed; a report whose
    stale banner cannot be written is renamed <name>.stale.<ext>, never left unmarked where readers look. Before:
    run.json said ok beside an interrupted 05, report.md was marked and report.html was not."""
    import errno

    from hmxnb.runner import freshness, runstate

    out = tmp_path / "smoke"
    (out / "05_compare_report").mkdir(parents=True)
    (out / "run.json").write_text('{"status": "ok"}')
    for folder in (out, out / "05_compare_report"):
        (folder / "report.md").write_text("# Report\n")
        (folder / "report.html").write_text("<html><body>\n<p>report</p></body></html>")

    def full(text, path):
        if str(path).endswith((".html", ".json")):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return freshness.save_text.__wrapped__(text, path)

    real = freshness.save_text
    full.__wrapped__ = real
    monkeypatch.setattr(freshness, "save_text", full)
    with pytest.raises(OSError, match="No space left"):
        freshness.mark_reports(out, "05_compare_report", "05_compare_report is interrupted")
    for folder in (out, out / "05_compare_report"):
        assert (folder / "report.md").read_text().startswith("> **Stale report**")
        assert not (folder / "report.html").exists() and (folder / "report.stale.html").is_file()

    monkeypatch.setattr(runstate, "save_json", lambda obj, path: full("", path))
    with pytest.raises(OSError, match="No space left"):
        runstate.write_run_record(out, {"profile": "smoke"}, "abc", {"05_compare_report": "k"})
    assert not (out / "run.json").exists()  # was: the old 'ok' record
