"""hmxnb.runner.members: one sweep member run alone, the members that finished, a lock per member folder."""

import json
import multiprocessing

import nbformat
import pytest

from hmxnb.runner.members import MemberBusy, is_locked, member_lock, member_status
from hmxnb.runner.run import RunError, run_profile
from test_run import WRITE, _notebook

SEEDS = {"seeds": [0, 1]}


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", WRITE)
    # the aggregate notebook declares `members` (as notebook 05 does) and writes what the runner passed it
    _notebook(d / "05_compare_report.ipynb", "import json, pathlib\n"
              "pathlib.Path(out_dir, 'members_seen.json').write_text(json.dumps(members))")
    nb = nbformat.read(d / "05_compare_report.ipynb", as_version=4)
    nb.cells[0].source += "\nmembers = None"
    nbformat.write(nb, d / "05_compare_report.ipynb")
    return d


def _run(nbdir, out, **kw):
    logs = []
    reports = run_profile("smoke", overrides={**SEEDS, **kw.pop("overrides", {})}, notebooks_dir=nbdir,
                          output_root=out, progress=False, log=logs.append, **kw)
    return reports, logs


def test_member_runs_alone_then_aggregate_names_missing(nbdir, tmp_path):
    out = tmp_path / "outputs"
    reports, logs = _run(nbdir, out, member="seed1")
    assert [r.out_root.name for r in reports] == ["seed1"] and [s.step for s in reports[0].steps] == ["01_first"]
    assert json.loads((out / "smoke" / "seed1" / "run.json").read_text())["status"] == "ok"  # run.json per member
    assert sorted(p.name for p in (out / "smoke").iterdir()) == ["seed1"]  # nothing shared written by a member job
    assert any("05_compare_report not run per member" in line for line in logs)

    reports, logs = _run(nbdir, out, only=["05"])
    assert any("aggregating 1 of 2 members; not included: seed0 (missing)" in line for line in logs)
    assert json.loads((out / "smoke" / "05_compare_report" / "members_seen.json").read_text()) == ["seed1"]
    assert json.loads((out / "smoke" / "members.json").read_text()) == {"seed0": "missing", "seed1": "finished"}

    _run(nbdir, out, member="seed0")
    reports, _ = _run(nbdir, out, only=["05"], force=True)  # more members finished: a new aggregate
    assert json.loads((out / "smoke" / "05_compare_report" / "members_seen.json").read_text()) == ["seed0", "seed1"]


@pytest.mark.parametrize("kw, message", [
    ({"member": "seed7"}, "unknown sweep member 'seed7'; members are: seed0, seed1"),  # a typo names the members
    ({"member": "seed0", "only": ["05"]}, "combine all members: run them without --member"),
    ({"member": "x", "overrides": {"seeds": []}}, "has no sweep"),  # a single-run profile has no members
    ({"only": ["05"]}, "no sweep member of 'smoke' has finished"),
])
def test_member_errors(nbdir, tmp_path, kw, message):
    with pytest.raises(RunError, match=message):
        _run(nbdir, tmp_path / "outputs", **kw)


def test_status_finished_stale_failed(nbdir, tmp_path):
    out = tmp_path / "outputs"
    _run(nbdir, out, member="seed0")
    status = member_status("smoke", SEEDS, out / "smoke", nbdir)
    assert {m: s["status"] for m, s in status.items()} == {"seed0": "finished", "seed1": "missing"}
    assert status["seed0"]["key"] == json.loads((out / "smoke" / "seed0" / "01_first" / "step.json").read_text())["key"]
    # other params: the finished outputs no longer count
    assert member_status("smoke", {**SEEDS, "max_steps": 9}, out / "smoke", nbdir)["seed0"]["status"] == "stale"
    _notebook(nbdir / "01_first.ipynb", "raise ValueError('boom')")
    _run(nbdir, out, member="seed1")
    assert member_status("smoke", SEEDS, out / "smoke", nbdir)["seed1"]["status"] == "failed"


def _hold(member_dir, ready, release):
    with member_lock(member_dir):
        ready.set()
        release.wait(30)


def test_lock_is_per_member(nbdir, tmp_path):
    out = tmp_path / "outputs"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(out / "smoke" / "seed0", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        assert is_locked(out / "smoke" / "seed0") and not is_locked(out / "smoke" / "seed1")
        with pytest.raises(RunError, match="being written by another job"):
            _run(nbdir, out, member="seed0")
        assert member_status("smoke", SEEDS, out / "smoke", nbdir)["seed0"]["status"] == "running"
        with pytest.raises(RunError, match="being written by another job"):
            _run(nbdir, out)  # the whole sweep in one process takes the same per-member locks
        reports, _ = _run(nbdir, out, member="seed1")  # another member of the same profile runs meanwhile
        assert reports[0].ok
    finally:
        release.set()
        holder.join(30)
    assert not is_locked(out / "smoke" / "seed0")  # released when the holder ended
    with member_lock(out / "smoke" / "seed0"):
        with pytest.raises(MemberBusy):
            with member_lock(out / "smoke" / "seed0"):
                pass


def test_sweep_names_are_unique_and_keep_the_plain_ones():
    """Two models with the same last id part were one folder (and one job); now both are named with their
    organisation, and a model with no namesake keeps the folder name it always had."""
    from hmxnb.runner.members import model_names, sweep
    from hmxnb.params import load_params

    p = load_params("smoke", {"sweep_models": ["Qwen/Qwen3-0.6B", "unsloth/Qwen3-0.6B", "Qwen/Qwen3-4B"],
                              "seeds": [0]})
    assert [name for name, _ in sweep(p)] == ["qwen-qwen3-0.6b-seed0", "unsloth-qwen3-0.6b-seed0", "qwen3-4b-seed0"]
    assert [over["model_name_or_path"] for _, over in sweep(p)] == p["sweep_models"]
    assert [name for name, _ in sweep(load_params("paper"))][::3] == [  # the paper's 15 folders are unchanged
        "qwen3-0.6b-seed0", "qwen3-4b-seed0", "qwen3-8b-seed0", "gemma-2-2b-it-seed0", "llama-3.2-3b-instruct-seed0"]
    # ids the organisation does not tell apart (case, characters a folder name drops, local paths) get a short hash
    for models in (["Qwen/Qwen3-0.6B", "qwen/qwen3-0.6b"], ["/a/m/x", "/b/m/x/", "x"], ["org/a b", "org/a-b"]):
        names = model_names(models)
        assert len(set(names.values())) == len(models), names
    assert model_names(["/a/m/x", "/b/m/x/", "x"])["x"] == "x"


@pytest.mark.parametrize("over, message", [
    ({"sweep_models": ["a/b", "c/d", "a/b"]}, "sweep_models lists 'a/b' more than once"),
    ({"seeds": [0, 1, 0]}, "seeds lists 0 more than once"),
])
def test_a_model_or_seed_listed_twice_is_refused(over, message):
    from hmxnb.runner.members import sweep
    from hmxnb.params import ParamsError, load_params

    with pytest.raises(ParamsError, match=message):
        sweep(load_params("smoke", over))


def test_a_member_that_failed_early_is_failed_with_its_error(tmp_path):
    """With --keep-going, a member whose first step failed has no step.json in its last step: it was listed as
    '(missing)'; it is 'failed', with the step and error line, in the log, members.json and the report's list."""
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", WRITE + "\nassert p['seed'] != 0, 'seed 0 fails on purpose'")
    _notebook(d / "02_second.ipynb", WRITE)
    # the aggregate notebook declares `left_out` (as notebook 05 does) and writes what the runner passed it
    _notebook(d / "05_compare_report.ipynb", "import json, pathlib\n"
              "pathlib.Path(out_dir, 'left_out_seen.json').write_text(json.dumps(left_out))")
    nb = nbformat.read(d / "05_compare_report.ipynb", as_version=4)
    nb.cells[0].source += "\nleft_out = {}"
    nbformat.write(nb, d / "05_compare_report.ipynb")
    out, logs = tmp_path / "outputs", []
    run_profile("smoke", overrides=SEEDS, notebooks_dir=d, output_root=out, progress=False, log=logs.append,
                keep_going=True)
    failed = "failed in 01_first: AssertionError in cell [3]: seed 0 fails on purpose"
    assert any(f"not included: seed0 ({failed})" in line for line in logs), "\n".join(logs)
    assert json.loads((out / "smoke" / "members.json").read_text()) == {"seed0": failed, "seed1": "finished"}
    assert json.loads((out / "smoke" / "05_compare_report" / "left_out_seen.json").read_text()) == {"seed0": failed}
    status = member_status("smoke", SEEDS, out / "smoke", d)["seed0"]
    assert status["status"] == "failed" and status["key"] is None


def test_a_member_whose_runner_was_killed_is_interrupted(nbdir, tmp_path):
    """A step.json left 'running' (the runner killed, no lock held) or 'interrupted' is said so, not 'missing'."""
    from hmxnb.runner.members import describe, expected_keys, per_member_steps
    from hmxnb.params import load_params

    key = expected_keys(load_params("smoke", {**SEEDS, "seed": 0}), per_member_steps(nbdir))["01_first"]
    step = tmp_path / "smoke" / "seed0" / "01_first"
    step.mkdir(parents=True)
    (step / "step.json").write_text(json.dumps({"key": key, "status": "running"}))
    status = member_status("smoke", SEEDS, tmp_path / "smoke", nbdir)
    assert describe(status["seed0"]) == "interrupted in 01_first" and status["seed1"]["status"] == "missing"
