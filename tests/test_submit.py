"""hmxnb.runner.submit: job commands and resources from params, skipping finished members, and real job runs.

The job tests submit a two-seed sweep of stand-in notebooks (tiny notebooks that write the files the next step
reads, as tests/test_run.py stubs steps): each member job runs `python -m hmxnb run --member`, the aggregate job
`--only 05` over the members that finished. One runs them as SLURM jobs on a single-node cluster started on
localhost (tests/slurm_local.py; skipped, saying why, where slurm-wlm and munge are not installed: .ci/run installs
them), one with submitit's local executor. The pipeline's own notebooks are tested end to end in test_e2e.py.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from hmxnb.runner.cli import _parser
from hmxnb.runner.members import expected_keys, per_member_steps
from hmxnb.params import load_params
from hmxnb.paths import NOTEBOOKS
from hmxnb.runner.runstate import RunError
from hmxnb.runner.submit import job_name, plan, run_command, slurm_resources
from test_run import _notebook

ROOT = Path(__file__).resolve().parents[1]


def test_run_command_round_trips_overrides(tmp_path):
    over = {"seeds": [0, 1], "learning_rate": 1e-5, "model_name_or_path": "/a b/model", "load_in_4bit": False}
    cmd = run_command("paper", over, "qwen3-4b-seed1", tmp_path, tmp_path / "nb")
    assert cmd[:3] == [sys.executable, "-m", "hmxnb"] and cmd[-2:] == ["--member", "qwen3-4b-seed1"]
    args = _parser().parse_args(cmd[3:])
    assert (args.profile, dict(args.set), args.member, args.outputs) == ("paper", over, "qwen3-4b-seed1", tmp_path)
    assert args.notebooks == tmp_path / "nb" and "--notebooks" not in run_command("paper", {}, "m")
    assert run_command("paper", {}, None)[-3:] == ["--only", "05", "--force"]  # the aggregate: always re-made


@pytest.mark.parametrize("over, flags, expected", [
    ({}, {}, {"gpus_per_node": 1, "cpus_per_task": 8, "time": 1440}),  # defaults; partition and memory: the cluster's
    ({"slurm_partition": "gpu", "slurm_mem_gb": 64}, {}, {"partition": "gpu", "gpus_per_node": 1, "cpus_per_task": 8,
                                                          "time": 1440, "mem": "64G"}),
    ({"slurm_partition": "gpu"}, {"slurm_partition": "a100", "slurm_time_min": 90},
     {"partition": "a100", "gpus_per_node": 1, "cpus_per_task": 8, "time": 90}),
    ({}, {"slurm_gpus_per_node": 0, "slurm_cpus_per_task": 1}, {"cpus_per_task": 1, "time": 1440}),  # CPU only
])
def test_slurm_resources(over, flags, expected):
    assert slurm_resources(load_params("paper", over), flags) == expected


def test_more_processes_than_gpus_is_an_error():
    with pytest.raises(RunError, match="num_processes"):
        slurm_resources(load_params("paper", {"num_processes": 2}), {})
    assert slurm_resources(load_params("paper", {"num_processes": 2}), {"slurm_gpus_per_node": 2})["gpus_per_node"] == 2


def test_slurm_keys_do_not_change_step_keys():
    from hmxnb.params import params_hash

    a, b = load_params("paper"), load_params("paper", {"slurm_partition": "other", "slurm_time_min": 5})
    assert params_hash(a) == params_hash(b)  # re-submitting elsewhere keeps finished steps
    assert params_hash(a) != params_hash(load_params("paper", {"num_processes": 2}))  # the global batch does change


def _fake_finished(profile_root, over, member):
    """A member whose last step (04) says it finished with the keys these params give."""
    p = load_params("smoke", {**over, "seed": int(member[-1])})
    key = expected_keys(p, per_member_steps(NOTEBOOKS))["04_benchmarks"]
    d = profile_root / member / "04_benchmarks"
    d.mkdir(parents=True)
    (d / "step.json").write_text(json.dumps({"key": key, "status": "ok"}))


def test_plan_skips_finished_and_queued(tmp_path):
    over = {"seeds": [0, 1, 2]}
    _fake_finished(tmp_path, over, "seed0")
    todo, skipped = plan("smoke", over, tmp_path, NOTEBOOKS, queued={job_name("smoke", "seed1")})
    assert todo == ["seed2"] and skipped == {"seed0": "finished", "seed1": "queued"}
    todo, _ = plan("smoke", {**over, "max_steps": 9}, tmp_path, NOTEBOOKS, queued=set())
    assert todo == ["seed0", "seed1", "seed2"]  # finished with other params: submitted again


def test_plan_finds_a_queued_member_of_a_profile_given_as_a_path(tmp_path):
    """Jobs are named after the loaded profile ('smoke' for params/smoke.yaml); the queue check must use that name."""
    path = str(ROOT / "params" / "smoke.yaml")
    todo, skipped = plan(path, {"seeds": [0, 1]}, tmp_path, NOTEBOOKS, queued={job_name("smoke", "seed1")})
    assert todo == ["seed0"] and skipped == {"seed1": "queued"}


def test_dry_run_prints_the_commands(tmp_path, capsys):
    from hmxnb.runner.cli import main

    _fake_finished(tmp_path / "smoke", {"seeds": [0, 1]}, "seed0")
    assert main(["submit", "--profile", "smoke", "--set", "seeds=[0, 1]", "--executor", "local", "--dry-run",
                 "--outputs", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "skip seed0: finished"
    assert out[1].endswith("--member seed1") and out[2].endswith("--only 05 --force") and len(out) == 3


# --- jobs that run -----------------------------------------------------------------------------------------------

TRAIN = ("import json, pathlib\nfrom hmxnb.params import load_params\np = load_params(profile, params_overrides)\n"
         "pathlib.Path(out_dir, 'model.json').write_text(json.dumps({'seed': p['seed']}))")
BENCH = ("import json, pathlib\n"
         "model = json.loads((pathlib.Path(out_dir).parent / '01_train' / 'model.json').read_text())\n"
         "pathlib.Path(out_dir, 'samples.jsonl').write_text(json.dumps({'seed': model['seed']}) + '\\n')")
REPORT = ("import json, pathlib\nroot = pathlib.Path(out_dir).parent\n"
          "rows = [json.loads((root / m / '02_bench' / 'samples.jsonl').read_text()) for m in members]\n"
          "pathlib.Path(out_dir, 'comparisons.json').write_text(json.dumps(rows))\n"
          "(root / 'report.md').write_text('# Report\\n' + ''.join(f\"- seed {r['seed']}\\n\" for r in rows))")
SEEDS = {"seeds": [0, 1]}


@pytest.fixture
def stubs(tmp_path):
    """Stand-ins for the pipeline: 01 writes a 'model', 02 reads it and writes samples, 05 (the aggregate, given
    `members` as notebook 05 is) compares the members' samples and writes the report."""
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_train.ipynb", TRAIN)
    _notebook(d / "02_bench.ipynb", BENCH)
    _notebook(d / "05_compare_report.ipynb", REPORT)
    nb = nbformat.read(d / "05_compare_report.ipynb", as_version=4)
    nb.cells[0].source += "\nmembers = None"
    nbformat.write(nb, d / "05_compare_report.ipynb")
    return d


def _check_sweep(root: Path) -> None:
    """What a finished submission leaves: every member's own run, the aggregate over both, its report."""
    for seed in (0, 1):  # each member job wrote only its own folder and record
        assert json.loads((root / f"seed{seed}" / "run.json").read_text())["status"] == "ok"
        assert json.loads((root / f"seed{seed}" / "02_bench" / "samples.jsonl").read_text()) == {"seed": seed}
    assert json.loads((root / "members.json").read_text()) == {"seed0": "finished", "seed1": "finished"}
    nb = json.loads((root / "05_compare_report" / "05_compare_report.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["members"] == ["seed0", "seed1"]
    assert json.loads((root / "05_compare_report" / "comparisons.json").read_text()) == [{"seed": 0}, {"seed": 1}]
    assert (root / "report.md").read_text() == "# Report\n- seed 0\n- seed 1\n"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    from slurm_local import LocalSlurm, missing_tools

    if missing_tools():
        pytest.skip(f"SLURM TEST NOT RUN: {', '.join(missing_tools())} not installed (Debian: apt-get install "
                    "slurm-wlm munge; .ci/run installs them)")
    if os.geteuid() != 0:
        pytest.skip("SLURM TEST NOT RUN: the local cluster runs its daemons as root (SlurmUser=root)")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"), cpus=2)
    cluster.start()
    yield cluster
    cluster.stop()


def test_two_seeds_as_slurm_jobs(slurm, stubs, tmp_path):
    out = tmp_path / "outputs"
    cmd = [sys.executable, "-m", "hmxnb", "submit", "--profile", "smoke", "--set=seeds=[0, 1]", "--executor", "slurm",
           "--gpus", "0", "--cpus", "1", "--time-min", "15", "--notebooks", str(stubs), "--outputs", str(out)]
    env = {**slurm.env, "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    res = subprocess.run(cmd + ["--wait"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    wall = time.time() - t0
    jobs = [json.loads(line) for line in (out / "smoke" / "_jobs" / "submissions.jsonl").read_text().splitlines()]
    states = slurm.job_states()
    print(f"\nSLURM test: submit --wait took {wall:.0f}s; jobs: {states}")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert [j["name"] for j in jobs] == ["hmxnb-smoke-seed0", "hmxnb-smoke-seed1", "hmxnb-smoke-aggregate"]
    assert all(j["command"][j["command"].index("--notebooks") + 1] == str(stubs) for j in jobs)  # passed on
    assert all(states[j["job_id"]].endswith(":COMPLETED") for j in jobs), states
    _check_sweep(out / "smoke")
    # re-submitting skips the finished members: only the aggregate would be submitted
    again = subprocess.run(cmd + ["--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.stdout.splitlines()[:2] == ["skip seed0: finished", "skip seed1: finished"], again.stderr
    assert len(again.stdout.splitlines()) == 3 and again.stdout.splitlines()[2].endswith("--only 05 --force")


def test_local_executor_runs_members_side_by_side(stubs, tmp_path, monkeypatch):
    from hmxnb.runner.submit import submit

    out = tmp_path / "outputs"
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the jobs inherit this process's environment
    lines = []
    res = submit("smoke", SEEDS, executor="local", outputs=out, notebooks_dir=stubs, max_parallel=2,
                 log=lines.append)
    assert sorted(res["results"].values()) == ["ok", "ok", "ok"], lines
    assert sorted(res["jobs"].values()) == ["aggregate", "seed0", "seed1"]
    _check_sweep(out / "smoke")
    runs = [json.loads((out / "smoke" / m / "run.json").read_text()) for m in ("seed0", "seed1")]
    assert [r["params"]["seed"] for r in runs] == [0, 1]
    again = submit("smoke", SEEDS, executor="local", outputs=out, notebooks_dir=stubs, dry_run=True, log=lines.append)
    assert again["members"] == [] and again["skipped"] == {"seed0": "finished", "seed1": "finished"}


def test_a_job_the_cluster_stops_ends_with_true_records(tmp_path):
    """SLURM's warning before the time limit (submitit's SIGUSR2) goes to every process of the job step: submitit's
    worker, our runner and its kernel. submitit's CommandFunction then SIGKILLed the runner, leaving step.json and
    run.json at 'running' with no history line. RunnerJob passes the stop on and lets the runner record it first;
    submitit's own handling (here: 'timed-out and not checkpointable') follows. A real submitit local job."""
    import signal

    import submitit
    from submitit.core.utils import UncompletedJobError
    from test_runstate import CLI, SLOW, _wait_for

    from hmxnb.runner.job import RunnerJob
    from test_run import WRITE, _notebook

    nbdir, out = tmp_path / "notebooks", tmp_path / "outputs"
    nbdir.mkdir()
    _notebook(nbdir / "01_first.ipynb", WRITE)
    _notebook(nbdir / "02_slow.ipynb", SLOW)
    (tmp_path / "cli.py").write_text(CLI)
    executor = submitit.LocalExecutor(folder=tmp_path / "_jobs")
    executor.update_parameters(timeout_min=5)
    job = executor.submit(RunnerJob([sys.executable, str(tmp_path / "cli.py"), str(nbdir), str(out)], cwd=str(ROOT)))
    step = out / "smoke" / "02_slow"
    _wait_for(step / "kernel.pid")
    runner = json.loads((step / "step.json").read_text())["pid"]
    worker = int(Path(f"/proc/{runner}/stat").read_text().split(")")[-1].split()[1])
    for pid in (worker, runner, int((step / "kernel.pid").read_text())):  # as SLURM signals the whole step
        os.kill(pid, signal.SIGUSR2)
    with pytest.raises(UncompletedJobError, match="timed-out and not checkpointable"):
        job.result()
    assert json.loads((step / "step.json").read_text())["status"] == "interrupted"
    assert json.loads((out / "smoke" / "run.json").read_text())["status"] == "interrupted"
    history = [json.loads(line) for line in (out / "smoke" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["status"] == "interrupted"
    assert "stopped by SIGUSR2" in job.stderr() or "stopped by SIGTERM" in job.stderr()


@pytest.mark.parametrize("text", ["slurm_partition: |\n  gpu\n  a100\n", "slurm_partition: \"gpu\\r\"\n",
                                  "slurm_partition: \"gpu\\tx\"\n"])
def test_a_slurm_value_with_a_control_character_is_refused(tmp_path, text):
    """Issue 32: a newline in slurm_partition (a YAML `|` block) would break the sbatch script; one line names it."""
    from hmxnb.params import ParamsError

    (tmp_path / "mine.yaml").write_text(text)
    with pytest.raises(ParamsError, match="params key 'slurm_partition' .* without control characters") as err:
        load_params(str(tmp_path / "mine.yaml"))
    assert "\n" not in str(err.value)


def test_a_submit_flag_is_validated_as_its_key():
    from hmxnb.params import ParamsError

    with pytest.raises(ParamsError, match="'slurm_partition' in the submit flags"):
        slurm_resources(load_params("paper"), {"slurm_partition": "gpu\n#SBATCH --exclusive"})
    with pytest.raises(ParamsError, match="'slurm_time_min' in the submit flags must be in"):
        slurm_resources(load_params("paper"), {"slurm_time_min": 0})
