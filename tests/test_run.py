"""hmxnb.runner.run: papermill runner — order, skip / force, never overwriting another run, failures kept."""

import json
from pathlib import Path

import nbformat
import pytest

from hmxnb.runner.members import sweep
from hmxnb.params import load_params
from hmxnb.runner.run import RunError, run_profile, select_steps
from hmxnb.runner.runstate import plan_step


def _notebook(path, code):
    params = nbformat.v4.new_code_cell('profile = "smoke"\nparams_overrides = {}\nout_dir = None')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


WRITE = (
    "import json, pathlib\n"
    "from hmxnb.params import load_params\n"
    "p = load_params(profile, params_overrides)\n"
    "pathlib.Path(out_dir, 'out.json').write_text(json.dumps({'max_steps': p['max_steps']}))"
)


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", WRITE)
    _notebook(d / "02_second.ipynb", WRITE)
    return d


def _run(nbdir, out, **kw):
    logs = []
    reports = run_profile("smoke", notebooks_dir=nbdir, output_root=out, progress=False, log=logs.append, **kw)
    return reports[0], logs


def test_run_then_skip_then_force(nbdir, tmp_path):
    out = tmp_path / "outputs"
    r1, _ = _run(nbdir, out)
    assert [s.status for s in r1.steps] == ["ok", "ok"]
    step = out / "smoke" / "01_first"
    assert json.loads((step / "out.json").read_text()) == {"max_steps": 4}
    assert (step / "01_first.ipynb").is_file()
    run = json.loads((out / "smoke" / "run.json").read_text())
    assert run["status"] == "ok" and [s["step"] for s in run["steps"]] == ["01_first", "02_second"]
    assert run["versions"]["papermill"] and run["params_hash"]

    r2, logs = _run(nbdir, out)
    assert [s.status for s in r2.steps] == ["skipped", "skipped"]
    assert any("up to date" in line for line in logs)

    r3, _ = _run(nbdir, out, force=True)
    assert [s.status for s in r3.steps] == ["ok", "ok"]


def test_force_with_same_params_is_a_fresh_run(nbdir, tmp_path):
    # a step that appends to its own folder (as training resumes from its checkpoints) must not see the old run's files
    _notebook(nbdir / "01_first.ipynb",
              "import pathlib\nwith open(pathlib.Path(out_dir, 'steps.log'), 'a') as f:\n    f.write('step\\n')")
    out = tmp_path / "outputs"
    _run(nbdir, out, only=["01"])
    r, _ = _run(nbdir, out, only=["01"], force=True)
    assert r.ok
    assert (out / "smoke" / "01_first" / "steps.log").read_text() == "step\n"  # not "step\nstep\n"
    archived = list((out / "smoke" / "_archive").glob("01_first-*/steps.log"))
    assert len(archived) == 1 and archived[0].read_text() == "step\n"  # the old outputs are kept


def test_different_params_never_overwrite(nbdir, tmp_path):
    out = tmp_path / "outputs"
    _run(nbdir, out)
    with pytest.raises(RunError, match="different run.*max_steps 4 -> 7"):  # says which params changed
        _run(nbdir, out, overrides={"max_steps": 7})
    assert json.loads((out / "smoke" / "01_first" / "out.json").read_text()) == {"max_steps": 4}  # untouched

    r, _ = _run(nbdir, out, overrides={"max_steps": 7}, force=True)
    assert r.ok
    assert json.loads((out / "smoke" / "01_first" / "out.json").read_text()) == {"max_steps": 7}
    archived = list((out / "smoke" / "_archive").glob("01_first-*/out.json"))
    assert len(archived) == 1 and json.loads(archived[0].read_text()) == {"max_steps": 4}  # old run kept


def test_only_and_from(nbdir, tmp_path):
    out = tmp_path / "outputs"
    r, _ = _run(nbdir, out, only=["02"])
    assert [s.step for s in r.steps] == ["02_second"]
    assert not (out / "smoke" / "01_first").exists()
    r, _ = _run(nbdir, out, start="01")
    assert [s.status for s in r.steps] == ["ok", "skipped"]


def test_rerunning_a_step_reruns_what_follows(nbdir, tmp_path, monkeypatch):
    # a step's key holds the previous step's key: once 01 is re-run from an edited notebook, 02's finished outputs
    # are not "up to date" (they came from the old 01), though 02's notebook and the params did not change
    from hmxnb.runner import runsteps as runner

    monkeypatch.setattr(runner, "_execute", lambda *a: None)  # the keys are the point here, not the notebooks
    out = tmp_path / "outputs"
    first, _ = _run(nbdir, out)
    _notebook(nbdir / "01_first.ipynb", WRITE + "\n# edited")  # a changed notebook is a different step
    r, _ = _run(nbdir, out, only=["01"], force=True)
    assert [s.status for s in r.steps] == ["ok"]
    with pytest.raises(RunError, match="02_second holds outputs of a different run.*an earlier step changed"):
        _run(nbdir, out)  # 01 is up to date now; 02 must not be skipped
    r, _ = _run(nbdir, out, start="02", force=True)
    assert [(s.step, s.status) for s in r.steps] == [("02_second", "ok")]
    assert r.steps[0].key != first.steps[1].key
    again, _ = _run(nbdir, out)
    assert [s.status for s in again.steps] == ["skipped", "skipped"]


def test_failing_step_stops_and_keeps_notebook(nbdir, tmp_path):
    _notebook(nbdir / "01_first.ipynb", "raise ValueError('rubric exploded')")
    out = tmp_path / "outputs"
    r, logs = _run(nbdir, out)
    assert [s.status for s in r.steps] == ["failed"]  # 02 never ran
    assert "ValueError" in r.steps[0].error and "rubric exploded" in r.steps[0].error
    assert (out / "smoke" / "01_first" / "01_first.ipynb").is_file()
    assert json.loads((out / "smoke" / "run.json").read_text())["status"] == "failed"
    assert any("kept for inspection" in line for line in logs)
    # the same command again retries the failed step in place (same key): no 'different run' error
    r2, _ = _run(nbdir, out)
    assert r2.steps[0].status == "failed"


def test_bad_params_touch_nothing(nbdir, tmp_path):
    out = tmp_path / "outputs"
    from hmxnb.params import ParamsError

    with pytest.raises(ParamsError):
        _run(nbdir, out, overrides={"max_step": 1})
    assert not out.exists()


def test_unknown_step():
    with pytest.raises(RunError, match="unknown step '07'"):
        select_steps([], only=["07"])


def test_plan_step_unknown_outputs(tmp_path):
    d = tmp_path / "01_x"
    d.mkdir()
    (d / "something.txt").write_text("mine")
    with pytest.raises(RunError, match="unknown run"):
        plan_step(d, "k", force=False, out_root=tmp_path)


@pytest.mark.parametrize(
    "over, expected",
    [
        ({}, [("", {})]),                                                        # a single run
        ({"seeds": [0, 1]}, [("seed0", {"seed": 0}), ("seed1", {"seed": 1})]),   # seeds only
        ({"sweep_models": ["Qwen/Qwen3-0.6B"], "seeds": [2]},
         [("qwen3-0.6b-seed2", {"model_name_or_path": "Qwen/Qwen3-0.6B", "seed": 2})]),  # model x seed
    ],
)
def test_sweep(over, expected):
    assert sweep(load_params("smoke", over)) == expected


def test_only_warns_about_stale_upstream(nbdir, tmp_path):
    out = tmp_path / "outputs"
    _run(nbdir, out, only=["01"])
    _, logs = _run(nbdir, out, only=["02"], overrides={"max_steps": 9})
    assert any("01_first outputs come from other params" in line for line in logs)
    _, logs = _run(nbdir, tmp_path / "elsewhere", only=["02"])
    assert any("01_first has no finished outputs" in line for line in logs)


def test_sweep_runs_each_then_aggregates_once(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", WRITE)
    _notebook(d / "05_compare_report.ipynb",
              "import pathlib, json\n"
              "runs = sorted(p.parent.parent.name for p in pathlib.Path(out_dir).parent.glob('*/01_first/out.json'))\n"
              "pathlib.Path(out_dir, 'runs.json').write_text(json.dumps(runs))")
    out = tmp_path / "outputs"
    logs = []
    kw = dict(overrides={"seeds": [0, 1]}, notebooks_dir=d, output_root=out, progress=False, log=logs.append)
    reports = run_profile("smoke", **kw)
    assert [r.out_root.name for r in reports] == ["seed0", "seed1", "smoke"]
    assert all((out / "smoke" / f"seed{seed}" / "01_first" / "out.json").is_file() for seed in (0, 1))
    assert not (out / "smoke" / "seed0" / "05_compare_report").exists()  # the aggregate step runs once, at the top
    assert json.loads((out / "smoke" / "05_compare_report" / "runs.json").read_text()) == ["seed0", "seed1"]
    again = run_profile("smoke", **kw)
    assert {s.status for r in again for s in r.steps} == {"skipped"}


def test_relative_data_dir_is_made_absolute(nbdir, tmp_path, monkeypatch):
    import os

    (tmp_path / "mirror").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HMXNB_DATA_DIR", "mirror")
    _notebook(nbdir / "01_first.ipynb", WRITE.replace("'max_steps': p['max_steps']", "'data_dir': p['data_dir']"))
    out = tmp_path / "outputs"
    r, _ = _run(nbdir, out, only=["01"])  # the kernel runs in notebooks/, where "mirror" would not exist
    assert r.ok and os.environ["HMXNB_DATA_DIR"] == str(tmp_path / "mirror")
    assert json.loads((out / "smoke" / "01_first" / "out.json").read_text()) == {"data_dir": str(tmp_path / "mirror")}


def test_relative_paths_keep_their_meaning_in_the_notebooks(nbdir, tmp_path, monkeypatch):
    from hmxnb.data import PACKAGE_DATA

    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.jsonl").write_text((PACKAGE_DATA / "prompts.jsonl").read_text())
    (tmp_path / "mine.yaml").write_text("max_steps: 2\nprompts_file: prompts.jsonl\n")
    _notebook(nbdir / "01_first.ipynb",
              WRITE.replace("'max_steps': p['max_steps']", "'prompts_file': p['prompts_file']"))
    out = tmp_path / "outputs"
    reports = run_profile("mine.yaml", {"data_dir": "."}, only=["01"], notebooks_dir=nbdir, output_root=out,
                          progress=False, log=lambda line: None)  # relative profile file, prompts file and data_dir
    assert reports[0].ok, reports[0].steps[0].error
    expected = {"prompts_file": str(tmp_path / "prompts.jsonl")}
    assert json.loads((out / "mine" / "01_first" / "out.json").read_text()) == expected


@pytest.mark.parametrize("name", ["...yaml", "..yaml"])
def test_profile_file_name_cannot_leave_outputs(nbdir, tmp_path, name):
    from hmxnb.params import ParamsError

    (tmp_path / name).write_text("max_steps: 2\n")
    out = tmp_path / "repo" / "outputs"
    out.mkdir(parents=True)
    with pytest.raises(ParamsError, match="profile name"):
        run_profile(str(tmp_path / name), notebooks_dir=nbdir, output_root=out, progress=False, log=lambda line: None)
    assert list(out.iterdir()) == [] and sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["outputs"]


@pytest.mark.parametrize("model", ["x/..", "../..", "a b/Ünï code", "."])
def test_sweep_member_names_stay_inside(model, tmp_path):
    from hmxnb.paths import inside

    (sub, _), = sweep(load_params("smoke", {"sweep_models": [model], "seeds": []}))
    assert sub and not sub.startswith(".") and "/" not in sub
    assert inside(tmp_path, "smoke", sub).parent == (tmp_path / "smoke").resolve()


def test_inside_refuses_an_escaping_path(tmp_path):
    from hmxnb.paths import PathError, inside

    with pytest.raises(PathError, match="outside"):
        inside(tmp_path / "outputs", "..", "x")


def test_unwritable_outputs_is_one_line(nbdir, tmp_path):
    out = tmp_path / "outputs"
    out.write_text("a file where the outputs folder should be")
    with pytest.raises(RunError, match=f"cannot write to the outputs folder {out}") as err:
        _run(nbdir, out)
    assert "\n" not in str(err.value)


def test_empty_profile_says_it_runs_full_size_defaults(nbdir, tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    logs = []
    run_profile(str(tmp_path / "empty.yaml"), only=["01"], notebooks_dir=nbdir, output_root=tmp_path / "out",
                progress=False, log=logs.append)
    assert any("sets no keys" in line and "max_steps=10" in line for line in logs)


def test_4bit_profile_without_gpu_stops_before_the_hub(nbdir, tmp_path, monkeypatch):
    from hmxnb import models

    monkeypatch.setattr(models, "cuda_available", lambda: False)
    with pytest.raises(RunError, match="profile 'colab-t4' needs a CUDA GPU"):
        run_profile("colab-t4", notebooks_dir=nbdir, output_root=tmp_path / "out", progress=False,
                    log=lambda line: None)
    assert not (tmp_path / "out").exists()


def test_keep_going_runs_the_other_members_and_compares_those_that_finished(tmp_path):
    """A sweep stops at a failed member by default; with keep_going the others run and 05 gets the finished ones."""
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", WRITE + "\nassert p['seed'] != 0, 'seed 0 fails on purpose'")
    _notebook(d / "05_compare_report.ipynb",
              "import pathlib, json\npathlib.Path(out_dir, 'members.json').write_text(json.dumps(members))")
    kw = dict(overrides={"seeds": [0, 1]}, notebooks_dir=d, progress=False, log=lambda line: None)
    stopped = run_profile("smoke", output_root=tmp_path / "stop", **kw)
    assert [(r.out_root.name, r.ok) for r in stopped] == [("seed0", False)]
    going = run_profile("smoke", output_root=tmp_path / "go", keep_going=True, **kw)
    assert [(r.out_root.name, r.ok) for r in going] == [("seed0", False), ("seed1", True), ("smoke", True)]
    assert json.loads((tmp_path / "go" / "smoke" / "05_compare_report" / "members.json").read_text()) == ["seed1"]
    status = json.loads((tmp_path / "go" / "smoke" / "members.json").read_text())
    assert status == {"seed0": "failed in 01_first: AssertionError in cell [3]: seed 0 fails on purpose",
                      "seed1": "finished"}


def test_progress_bars_in_executed_notebooks_are_one_line(nbdir, tmp_path):
    """A tqdm loop in a notebook the runner executes leaves its last line, not a line per update or a '0%' line."""
    _notebook(nbdir / "01_first.ipynb", "import time\nfrom tqdm.auto import tqdm\n"
                                        "for _ in tqdm(range(150), desc='loop'):\n    time.sleep(0.01)")
    r, _ = _run(nbdir, tmp_path / "outputs", only=["01"])
    assert r.ok
    nb = nbformat.read(tmp_path / "outputs" / "smoke" / "01_first" / "01_first.ipynb", as_version=4)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    lines = [line for line in text.replace("\r", "\n").splitlines() if "loop" in line]
    assert len(lines) == 1 and "100%" in lines[0], lines
    assert "IProgress" not in text  # no widget warning in a stored notebook


@pytest.mark.parametrize("use_unsloth, expected", [(False, "0"), (True, None)])
def test_kernels_skip_the_unsloth_import_when_the_profile_does_not_use_it(nbdir, tmp_path, use_unsloth, expected):
    """`import hmxnb` imports Unsloth (which patches TRL) wherever it is installed: a `use_unsloth: false` run gets
    kernels with HMXNB_IMPORT_UNSLOTH=0, so its TRL is TRL's own on a GPU machine too."""
    _notebook(nbdir / "01_first.ipynb", "import json, os, pathlib\n"
                                        "value = os.environ.get('HMXNB_IMPORT_UNSLOTH')\n"
                                        "pathlib.Path(out_dir, 'env.json').write_text(json.dumps(value))")
    r, _ = _run(nbdir, tmp_path / "out", only=["01"], overrides={"use_unsloth": use_unsloth})
    assert r.ok
    assert json.loads((tmp_path / "out" / "smoke" / "01_first" / "env.json").read_text()) == expected


# ---------------------------------------------------------------- what a step reads (issue 22)

REPORT = (  # a stand-in for notebook 05: the report at outputs/<profile>/ and in its folder
    "import pathlib, shutil\n"
    "out = pathlib.Path(out_dir)\n"
    "samples = (out.parent / '04_benchmarks' / 'samples.jsonl').read_text()\n"
    "(out / 'report.md').write_text('# Report\\nbuilt from ' + samples)\n"
    "(out / 'report.html').write_text('<html><head></head><body>\\n<h1>Report</h1>\\n</body></html>\\n')\n"
    "for name in ['report.md', 'report.html']:\n"
    "    shutil.copy(out / name, out.parent / name)"
)


def _bench_notebook(path, fail_flag):
    """A stand-in for notebook 04 that fails, like a truncated mc_task.json, while `fail_flag` exists."""
    _notebook(path, f"import pathlib\nif pathlib.Path({str(fail_flag)!r}).exists():\n"
                    "    raise ValueError('truthfulqa/mc_task.json:1:20: not valid JSON')\n"
                    "pathlib.Path(out_dir, 'samples.jsonl').write_text('{}\\n')")


def test_a_failed_input_makes_the_report_stale_and_its_step_refused(tmp_path):
    """Run 04-05, then a forced 04 fails: 05 is not 'up to date' any more. Its report is marked stale at once (one
    line says so), `--only 05` refuses naming 04, and once 04 is finished again 05 re-runs afresh."""
    d, flag, out = tmp_path / "notebooks", tmp_path / "fail04", tmp_path / "outputs"
    d.mkdir()
    _bench_notebook(d / "04_benchmarks.ipynb", flag)
    _notebook(d / "05_compare_report.ipynb", REPORT)
    first, _ = _run(d, out)
    assert [s.status for s in first.steps] == ["ok", "ok"]
    top = out / "smoke"
    assert (top / "report.md").read_text().startswith("# Report")

    flag.write_text("")
    r, logs = _run(d, out, only=["04"], force=True)
    assert [s.status for s in r.steps] == ["failed"]
    said = [line for line in logs if "05_compare_report is stale" in line]
    assert len(said) == 1 and "04_benchmarks is failed" in said[0] and str(top / "report.md") in said[0]
    for report in (top / "report.md", top / "05_compare_report" / "report.md"):
        first_line = report.read_text().splitlines()[0]
        assert first_line.startswith("> **Stale report**") and "04_benchmarks is failed" in first_line
    assert '<body>\n<div class="hmxnb-stale"' in (top / "report.html").read_text()
    assert json.loads((top / "05_compare_report" / "step.json").read_text())["status"] == "stale"
    assert {s["step"]: s["status"] for s in json.loads((top / "run.json").read_text())["steps"]} == \
        {"04_benchmarks": "failed", "05_compare_report": "stale"}

    with pytest.raises(RunError, match="05_compare_report reads 04_benchmarks, which is failed .*--from 04"):
        _run(d, out, only=["05"])  # was: "up to date, skipped" with the old report, exit 0
    with pytest.raises(RunError, match="reads 04_benchmarks, which is failed"):
        _run(d, out, only=["05"], force=True)  # refused before anything is archived
    assert not (top / "_archive").exists() or not list((top / "_archive").glob("05_*"))
    history = [json.loads(line) for line in (top / "history.jsonl").read_text().splitlines()]
    assert history[-1]["status"] == "refused" and "04_benchmarks, which is failed" in history[-1]["error"]

    flag.unlink()
    r, _ = _run(d, out)  # 04 retried in place, then the stale 05 re-runs afresh (its old outputs archived)
    assert [s.status for s in r.steps] == ["ok", "ok"]
    assert (top / "report.md").read_text().startswith("# Report")
    assert "hmxnb-stale" not in (top / "report.html").read_text()
    assert len(list((top / "_archive").glob("05_compare_report-*"))) == 1


def test_a_report_step_that_fails_leaves_no_unmarked_old_report(tmp_path):
    """`--only 05 --force` that fails: the report of the earlier run at outputs/<profile>/ says it is not current."""
    d, out = tmp_path / "notebooks", tmp_path / "outputs"
    d.mkdir()
    _bench_notebook(d / "04_benchmarks.ipynb", tmp_path / "never")
    _notebook(d / "05_compare_report.ipynb", REPORT)
    _run(d, out)
    _notebook(d / "05_compare_report.ipynb", REPORT + "\nraise RuntimeError('plot exploded')")
    r, logs = _run(d, out, only=["05"], force=True)
    assert [s.status for s in r.steps] == ["failed"]
    first_line = (out / "smoke" / "report.md").read_text().splitlines()[0]
    assert first_line.startswith("> **Stale report**") and "05_compare_report is failed" in first_line
    assert any("05_compare_report is failed; marked stale" in line for line in logs)


def test_an_input_rerun_since_makes_a_finished_step_stale(nbdir, tmp_path, monkeypatch):
    """04 forced again (same params, so the same key) gives new outputs: the 05 built on the old ones is stale and
    re-runs, though no key changed."""
    from hmxnb.runner import runsteps as runner

    monkeypatch.setattr(runner, "_execute", lambda *a: None)
    d = tmp_path / "nb"
    d.mkdir()
    _notebook(d / "04_benchmarks.ipynb", "")
    _notebook(d / "05_compare_report.ipynb", "")
    out = tmp_path / "outputs"
    _run(d, out)
    _, logs = _run(d, out, only=["04"], force=True)
    assert any("05_compare_report is stale (04_benchmarks was re-run after it)" in line for line in logs)
    again, _ = _run(d, out)
    assert [s.status for s in again.steps] == ["skipped", "ok"]


# ---------------------------------------------------------------- changed data (issue 22)

def test_changed_prompts_make_their_steps_not_up_to_date(tmp_path, monkeypatch):
    """The content of the data files a step reads is part of its key and its record: an edited prompts file makes
    01-03 (and what follows) a different run, named as a data change."""
    import hashlib

    from hmxnb.runner import runsteps as runner
    from hmxnb.data import PACKAGE_DATA

    monkeypatch.setattr(runner, "_execute", lambda *a: None)
    d, out, prompts = tmp_path / "nb", tmp_path / "outputs", tmp_path / "prompts.jsonl"
    d.mkdir()
    for name in ("01_design_rubric", "02_train_human", "03_train_reverse"):
        _notebook(d / f"{name}.ipynb", "")
    prompts.write_text((PACKAGE_DATA / "prompts.jsonl").read_text())
    over = {"prompts_file": str(prompts)}
    _run(d, out, overrides=over)
    again, _ = _run(d, out, overrides=over)
    assert [s.status for s in again.steps] == ["skipped"] * 3

    prompts.write_text(prompts.read_text() + '{"id": "x1", "kind": "k", "split": "train", "prompt": "And you?"}\n')
    with pytest.raises(RunError, match="01_design_rubric holds outputs of a different run .*data changed: prompts"):
        _run(d, out, overrides=over)  # was: "up to date, skipped" for 01-03
    r, _ = _run(d, out, overrides=over, force=True)
    assert [s.status for s in r.steps] == ["ok"] * 3
    rec = json.loads((out / "smoke" / "02_train_human" / "step.json").read_text())
    assert rec["data"] == {"prompts": hashlib.sha256(prompts.read_bytes()).hexdigest()}


def test_moved_data_is_the_same_run_changed_data_is_not(tmp_path, monkeypatch):
    """Where the data lives is not part of a step's key, its content is: a byte-identical prompts file and benchmark
    mirror at other paths (or no mirror, for the steps that read no benchmark) skip; the location is still recorded."""
    import shutil

    from hmxnb.runner import runsteps as runner
    from hmxnb.data import PACKAGE_DATA

    monkeypatch.setattr(runner, "_execute", lambda *a: None)
    monkeypatch.delenv("HMXNB_DATA_DIR", raising=False)  # data_dir None: the Hub
    d, out = tmp_path / "nb", tmp_path / "outputs"
    d.mkdir()
    for name in ("01_design_rubric", "02_train_human", "03_train_reverse", "04_benchmarks"):
        _notebook(d / f"{name}.ipynb", "")
    for where in ("a", "b"):
        (tmp_path / where / "mirror" / "truthfulqa").mkdir(parents=True)
        (tmp_path / where / "mirror" / "truthfulqa" / "mc_task.json").write_text("[]")
        shutil.copy(PACKAGE_DATA / "prompts.jsonl", tmp_path / where / "prompts.jsonl")

    def over(where):
        return {"data_dir": str(tmp_path / where / "mirror"), "prompts_file": str(tmp_path / where / "prompts.jsonl")}

    _run(d, out, overrides=over("a"))
    moved, _ = _run(d, out, overrides=over("b"))
    assert [s.status for s in moved.steps] == ["skipped"] * 4  # was: "a different run (data_dir ... -> ...)"
    rec = json.loads((out / "smoke" / "04_benchmarks" / "step.json").read_text())
    assert rec["params"]["data_dir"] == str(tmp_path / "a" / "mirror")  # the run that made it, as it ran
    with pytest.raises(RunError, match="04_benchmarks holds outputs of a different run .*data changed: .*benchmarks"):
        _run(d, out, overrides={**over("b"), "data_dir": None}, only=["04"])  # the Hub is other data: 04 only
    (tmp_path / "b" / "mirror" / "truthfulqa" / "mc_task.json").write_text("[1]")
    with pytest.raises(RunError, match="04_benchmarks holds outputs of a different run .*data changed: "
                                       "truthfulqa/mc_task.json"):
        _run(d, out, overrides=over("b"))


def test_benchmark_files_hashed_are_the_files_notebook_04_reads(tmp_path, monkeypatch):
    """hmxnb.steps names notebook 04's data files without importing the loaders (torch): the same files that
    evaluate.load_items opens, with the mirror as it is and with the optional sycophancy folder."""
    import builtins
    import os

    from hmxnb import data as data_module
    from hmxnb import evaluate
    from hmxnb.bench import common
    from hmxnb.steps import data_files
    from hmxnb.steps import declared

    mirror = os.environ.get("HMXNB_DATA_DIR")
    if not mirror or not (Path(mirror) / "truthfulqa").is_dir():
        pytest.skip("needs the offline benchmark mirror (HMXNB_DATA_DIR)")
    root = tmp_path / "mirror"
    root.mkdir()
    for sub in Path(mirror).iterdir():
        (root / sub.name).symlink_to(sub)
    (root / "sycophancy").mkdir()
    row = {"question": "Q?", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"}
    from hmxnb.steps import SYCOPHANCY_SUBSETS

    for subset in SYCOPHANCY_SUBSETS:
        (root / "sycophancy" / f"{subset}.jsonl").write_text(json.dumps(row) + "\n")
    opened = set()
    real_open = builtins.open
    monkeypatch.setattr(data_module, "open", lambda f, *a, **kw: opened.add(Path(f)) or real_open(f, *a, **kw),
                        raising=False)
    monkeypatch.setattr(common, "hub_reachable", lambda: False)
    params = load_params("smoke", {"data_dir": str(root)})
    evaluate.load_items(params, log=lambda line: None)
    declared = {f for f in data_files(declared("04_benchmarks").data, params).values()}
    assert opened == declared


# ---------------------------------------------------------------- a read-only step folder (issue 22)

def test_a_read_only_step_folder_is_refused_before_anything_is_archived(nbdir, tmp_path, monkeypatch):
    """`--force` on a folder this user cannot write moved a copy into _archive/, then failed on kernel.log, and
    history said 'interrupted'. Now: one line naming the folder, nothing archived, history 'refused'. (Tests run as
    root, whom permission bits do not stop: os.access is patched to answer as for another user.)"""
    import os

    from hmxnb.runner import runsteps as runner
    from hmxnb.runner import runstate

    monkeypatch.setattr(runner, "_execute", lambda *a: None)
    out = tmp_path / "outputs"
    _run(nbdir, out)
    step = out / "smoke" / "01_first"
    before = sorted(p.name for p in step.iterdir())
    real_access = os.access
    monkeypatch.setattr(runstate.os, "access", lambda p, mode: Path(p) != step and real_access(p, mode))
    with pytest.raises(RunError, match=f"^{step} is read-only for this user.*nothing was archived or run$") as err:
        _run(nbdir, out, only=["01"], force=True)
    assert "\n" not in str(err.value)
    assert not (out / "smoke" / "_archive").exists() and sorted(p.name for p in step.iterdir()) == before
    history = [json.loads(line) for line in (out / "smoke" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["status"] == "refused" and str(step) in history[-1]["error"]
    with pytest.raises(RunError, match="read-only"):  # a retry in place is refused the same way
        runstate.check_writable(step)


# ---------------------------------------------------------------- records that match what is on disk (issue 32)

ADAPTER = ("import pathlib\nd = pathlib.Path(out_dir, 'adapter')\nd.mkdir(exist_ok=True)\n"
           "(d / 'adapter_model.safetensors').write_bytes(b'weights')")


def test_a_deleted_artefact_makes_its_step_stale_and_its_readers_wait(tmp_path):
    """A finished step records the size and sha256 of every file it wrote; a file deleted or changed since makes it
    stale (it re-runs afresh) and a step that reads it is refused, naming the file. Before: 'up to date' everywhere,
    then notebook 04 failed on the missing adapter with a Hub error."""
    d, out = tmp_path / "nb", tmp_path / "outputs"
    d.mkdir()
    for name in ("02_train_human", "03_train_reverse"):
        _notebook(d / f"{name}.ipynb", ADAPTER)
    _notebook(d / "04_benchmarks.ipynb", WRITE)
    _run(d, out)
    rec = json.loads((out / "smoke" / "02_train_human" / "step.json").read_text())
    assert set(rec["files"]) == {"adapter/adapter_model.safetensors"}  # not the notebook, step.json or kernel.log
    (out / "smoke" / "02_train_human" / "adapter" / "adapter_model.safetensors").unlink()

    with pytest.raises(RunError, match="04_benchmarks reads 02_train_human, which is damaged "
                                       r"\(adapter/adapter_model.safetensors is missing\)"):
        _run(d, out, only=["04"])
    rec = json.loads((out / "smoke" / "02_train_human" / "step.json").read_text())
    assert rec["status"] == "stale" and rec["stale"] == "adapter/adapter_model.safetensors is missing"
    r, logs = _run(d, out)
    assert [s.status for s in r.steps] == ["ok", "skipped", "ok"]  # 02 re-run afresh, 04 after it
    assert list((out / "smoke" / "_archive").glob("02_train_human-*"))  # the damaged run is kept, not overwritten

    (out / "smoke" / "04_benchmarks" / "out.json").write_text("{}")
    r, logs = _run(d, out)
    assert [s.status for s in r.steps] == ["skipped", "skipped", "ok"]
    assert any("04_benchmarks is stale (out.json changed since the step finished)" in line for line in logs)


def test_a_step_records_its_code_and_a_skip_says_when_the_code_changed(nbdir, tmp_path, monkeypatch):
    """Editing hmxnb/ does not re-run finished steps (a full retrain for a comment would be too strict), but each
    step records the code that ran it and a skip says the code changed since; run.json keeps each step's code."""
    from hmxnb.runner import runsteps
    from hmxnb.artifacts import package_code_hash

    out = tmp_path / "outputs"
    _run(nbdir, out, only=["01"])
    rec = json.loads((out / "smoke" / "01_first" / "step.json").read_text())
    assert rec["code"]["package"] == package_code_hash() and len(rec["code"]["notebook"]) == 12
    assert json.loads((out / "smoke" / "run.json").read_text())["steps"][0]["code"] == rec["code"]

    _, logs = _run(nbdir, out, only=["01"])
    assert not any("code changed" in line for line in logs)
    real = runsteps.code_state
    monkeypatch.setattr(runsteps, "code_state", lambda nb: {**real(nb), "package": "edited00000"})
    r, logs = _run(nbdir, out, only=["01"])
    assert r.steps[0].status == "skipped"
    assert any(f"code changed since it ran (hmxnb/ source {rec['code']['package']} -> edited00000)" in line
               for line in logs)
    assert json.loads((out / "smoke" / "01_first" / "step.json").read_text())["code"] == rec["code"]  # as it ran


def test_a_run_json_left_running_by_a_killed_runner_reads_interrupted(tmp_path):
    """kill -9 leaves run.json 'running' (nothing can rewrite it); read_run tells it from a live run by its pid."""
    import os
    import subprocess
    import sys

    from hmxnb.artifacts import save_json
    from hmxnb.runner.runstate import read_run

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    steps = [{"step": "01_first", "status": "ok"}, {"step": "02_second", "status": "running"}]
    save_json({"status": "running", "pid": gone.pid, "steps": steps}, tmp_path / "run.json")
    rec = read_run(tmp_path)
    assert rec["status"] == "interrupted" and [s["status"] for s in rec["steps"]] == ["ok", "interrupted"]
    save_json({"status": "running", "pid": os.getpid(), "steps": steps}, tmp_path / "run.json")
    assert read_run(tmp_path)["status"] == "running"  # this process lives


def test_the_runner_trains_under_accelerate_before_a_training_notebook_only_with_several_processes(
        tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hmxnb.runner import runsteps

    d = tmp_path / "notebooks"
    d.mkdir()
    for name in ("01_design_rubric", "02_train_human", "03_train_reverse"):
        _notebook(d / f"{name}.ipynb", WRITE)
    launched = []
    monkeypatch.setattr(runsteps, "train_in_processes", lambda params, step_dir, log: launched.append(
        (params["direction"], params["num_processes"], Path(step_dir).name, (Path(step_dir) / "out.json").exists())))
    r, _ = _run(d, tmp_path / "outputs", overrides={"num_processes": 2})
    assert r.ok
    # 02 and 03 only, each in its own direction, before its notebook wrote anything
    assert launched == [("human", 2, "02_train_human", False), ("reverse", 2, "03_train_reverse", False)]
    one = SimpleNamespace(params=load_params("smoke"), overrides={}, ctx=SimpleNamespace(profile="smoke", log=print))
    runsteps._train_first(one, "02_train_human", tmp_path)  # num_processes 1: the notebook trains in its kernel
    assert len(launched) == 2
