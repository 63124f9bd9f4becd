"""End to end: the runner executes the notebooks on the `smoke` profile with the embedded SmolLM2 (offline, CPU)."""

import json

import pytest

from hmxnb.run import notebook_steps, run_profile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs")
    reports = run_profile("smoke", output_root=out, progress=False)
    return out / "smoke", reports[0]


def test_all_steps_ran(smoke_run):
    root, report = smoke_run
    assert report.ok, [s.__dict__ for s in report.steps]
    assert [s.step for s in report.steps] == [p.stem for p in notebook_steps()]
    run = json.loads((root / "run.json").read_text())
    assert run["status"] == "ok" and run["git_commit"] is not None


def test_01_rubric_outputs(smoke_run):
    root, _ = smoke_run
    d = root / "01_design_rubric"
    m = json.loads((d / "metrics.json").read_text())
    assert m["n_judgements"] == 24 * 4 and m["n_unparsed"] == 0
    assert -1 <= m["spearman_human_reward_vs_tier"] <= 1
    rows = [json.loads(line) for line in (d / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(0 <= r["reward_human"] <= 1 for r in rows)
    assert (d / "figures" / "rubric_examples.png").stat().st_size > 10_000
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["params"]["profile"] == "smoke" and prov["judge_prompt_version"]
    nb = json.loads((d / "01_design_rubric.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["profile"] == "smoke"


def test_second_run_skips(smoke_run):
    root, _ = smoke_run
    reports = run_profile("smoke", output_root=root.parent, progress=False, log=lambda *_: None)
    assert {s.status for s in reports[0].steps} == {"skipped"}
