"""End to end: the runner executes the notebooks on the `smoke` profile with the embedded SmolLM2 (offline, CPU)."""

import json

import pytest

from hmxnb.runner.run import notebook_steps, run_profile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir):
    import os

    os.environ.setdefault("HMXNB_DATA_DIR", str(data_dir))  # benchmarks read the offline mirror
    out = tmp_path_factory.mktemp("outputs")
    reports = run_profile("smoke", output_root=out, progress=False)
    return out / "smoke", reports[0]


def test_all_steps_ran(smoke_run):
    root, report = smoke_run
    assert report.ok, [s.__dict__ for s in report.steps]
    assert [s.step for s in report.steps] == [p.stem for p in notebook_steps()]
    run = json.loads((root / "run.json").read_text())
    assert run["status"] == "ok" and run["runner_git_commit"] is not None
    assert all(s["code"]["package"] and s["code"]["notebook"] for s in run["steps"])  # the code that ran each step
    adapter = json.loads((root / "02_train_human" / "step.json").read_text())["files"]
    assert "adapter/adapter_model.safetensors" in adapter and not any(f.startswith("checkpoints/") for f in adapter)


def test_01_rubric_outputs(smoke_run):
    root, _ = smoke_run
    d = root / "01_design_rubric"
    m = json.loads((d / "metrics.json").read_text())
    # smoke uses the contrast judge: one score per reply; the one empty example reply is unscorable, and counted
    assert m["judge_mode"] == "contrast" and m["criteria"] == ["expression"]
    assert m["n_judgements"] == 24 and m["n_unparsed"] == 1
    assert -1 <= m["spearman_human_reward_vs_tier"] <= 1
    # judge validity on the separate validation set, for the configured judge (smoke compares it with no other mode)
    assert set(m["validation"]) == {"contrast"}
    assert all(v["n_replies"] == 72 and -1 <= v["spearman_expressive_vs_flat"] <= 1 for v in m["validation"].values())
    assert (d / "figures" / "judge_validation.png").stat().st_size > 10_000
    rows = [json.loads(line) for line in (d / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(0 <= r["reward_human"] <= 1 for r in rows if r["reward_human"] is not None)
    assert [r["reply"] for r in rows if r["reward_human"] is None] == [""]
    assert (d / "figures" / "rubric_examples.png").stat().st_size > 10_000
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["params"]["profile"] == "smoke" and prov["judge_prompt_version"]
    nb = json.loads((d / "01_design_rubric.ipynb").read_text())
    assert nb["metadata"]["papermill"]["parameters"]["profile"] == "smoke"


def test_second_run_skips(smoke_run):
    root, _ = smoke_run
    reports = run_profile("smoke", output_root=root.parent, progress=False, log=lambda *_: None)
    assert {s.status for s in reports[0].steps} == {"skipped"}


@pytest.mark.parametrize("step, direction", [("02_train_human", "human"), ("03_train_reverse", "reverse")])
def test_training_outputs(smoke_run, step, direction):
    root, _ = smoke_run
    d = root / step
    m = json.loads((d / "metrics.json").read_text())
    assert m["direction"] == direction and m["steps"] == 4 and m["n_unparsed"] == 0
    assert (d / "adapter" / "adapter_config.json").is_file()
    log = (d / "train_log.csv").read_text().splitlines()
    assert len(log) == 1 + 4 and "rewards/self_judge/mean" in log[0] and "watch/truncated_share" in log[0]
    assert (d / "samples.jsonl").read_text().strip() and (d / "figures" / "training.png").is_file()
    # LoRA starts with B = 0 (the adapter is the base model); a B that moved is an optimiser step that reached it
    from safetensors.torch import load_file

    weights = load_file(d / "adapter" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(w.isfinite().all() for w in weights.values())
    assert max(float(w.abs().max()) for w in lora_b) > 0, "the adapter never left its initialisation"


def test_04_benchmark_records(smoke_run):
    root, _ = smoke_run
    d = root / "04_benchmarks"
    rows = [json.loads(line) for line in (d / "samples.jsonl").read_text().splitlines()]
    benches = {r["benchmark"] for r in rows}
    assert {"truthfulqa_mc1", "truthfulqa_mc2", "bbq", "sycophancy_are_you_sure", "sycophancy_suggested",
            "emobench_eu", "emobench_ea", "feeling_expression", "affect_statements"} <= benches
    assert {r["model"] for r in rows} == {"base", "human", "reverse"}
    m = json.loads((d / "metrics.json").read_text())["metrics"]
    assert 0 <= m["base"]["truthfulqa"]["mc1"] <= 1 and "s_dis" in m["human"]["bbq"]
    assert (d / "figures" / "benchmarks.png").is_file()


def _samples(root) -> list[dict]:
    return [json.loads(line) for line in (root / "04_benchmarks" / "samples.jsonl").read_text().splitlines()]


def test_04_every_model_answers_the_same_bench_limit_items(smoke_run):
    """Paired comparisons need the same items for base, human and reverse, and `bench_limit` of each benchmark (the
    held-out feeling-expression prompts too; EmoBench's is split in two parts, sycophancy has two turns per item)."""
    root, _ = smoke_run
    limit = json.loads((root / "04_benchmarks" / "provenance.json").read_text())["params"]["bench_limit"]
    ids = {}
    for r in _samples(root):
        ids.setdefault(r["benchmark"], {}).setdefault(r["model"], set()).add(r["item_id"])
    for bench, by_model in ids.items():
        assert by_model["base"] == by_model["human"] == by_model["reverse"], bench
    counts = {bench: len(by_model["base"]) for bench, by_model in ids.items()}
    whole = {b: n for b, n in counts.items() if not b.startswith("emobench_")}
    assert whole == {b: limit for b in whole}
    assert counts["emobench_eu"] + counts["emobench_ea"] == limit


def test_04_adapters_change_what_the_models_score(smoke_run):
    """The two adapters are loaded and differ: each model gives other TruthfulQA log-probabilities on the same items
    (a run that scored the base model three times, or one adapter twice, would pass every range check)."""
    root, _ = smoke_run
    logprobs = {}
    for r in _samples(root):
        if r["benchmark"] == "truthfulqa_mc2":
            logprobs.setdefault(r["model"], {})[r["item_id"]] = r["logprobs"]
    assert logprobs["human"] != logprobs["base"] and logprobs["reverse"] != logprobs["base"]
    assert logprobs["human"] != logprobs["reverse"]


def _comparisons(root) -> list[dict]:
    import csv

    with open(root / "05_compare_report" / "comparisons.csv") as f:
        return list(csv.DictReader(f))


def _numbers(tree) -> list[float]:
    if isinstance(tree, dict):
        return [x for v in tree.values() for x in _numbers(v)]
    return [float(tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_05_comparisons_are_differences_of_the_benchmark_metrics(smoke_run):
    """Every compared value is one of the model's own numbers in 04's metrics.json (a bias score as its size), each
    model has one value per metric in all its contrasts, the difference is A − B, and Holm never lowers a p-value."""
    root, _ = smoke_run
    metrics = json.loads((root / "04_benchmarks" / "metrics.json").read_text())["metrics"]
    limit = json.loads((root / "04_benchmarks" / "provenance.json").read_text())["params"]["bench_limit"]
    seen, measured = {}, [r for r in _comparisons(root) if r["value_a"] and r["value_b"]]
    assert len(measured) >= 3 * 13  # all but the Hub-only set, in each of the three contrasts
    for r in measured:
        a, b = float(r["value_a"]), float(r["value_b"])
        assert float(r["diff"]) == pytest.approx(a - b, abs=1e-12), r
        assert 0 < int(r["n_items"]) <= limit and float(r["p_value"]) <= float(r["p_holm"]) + 1e-12
        for model, value in ((r["model_a"], a), (r["model_b"], b)):
            own = _numbers(metrics[model])
            assert any(value == pytest.approx(x, rel=1e-9) or value == pytest.approx(abs(x), rel=1e-9) for x in own)
            assert seen.setdefault((model, r["benchmark"], r["metric"]), value) == pytest.approx(value, rel=1e-12)
    target = {r["benchmark"] for r in measured if r["training_target"] == "True"}
    assert {"feeling_expression", "affect_statements"} <= target
    assert all(int(r["n_items"]) == limit for r in measured if r["benchmark"] in target | {"truthfulqa_mc1"})


def test_05_report_quotes_the_comparisons(smoke_run):
    """The report's training-target table gives each contrast's difference and CI as comparisons.csv has them."""
    root, _ = smoke_run
    md = (root / "report.md").read_text().splitlines()
    for r in _comparisons(root):
        if r["training_target"] != "True" or not r["diff"]:
            continue
        quoted = f"{float(r['diff']):+.3f} [{float(r['ci_low']):+.3f}, {float(r['ci_high']):+.3f}]"
        values = f"| {float(r['value_a']):.3f} | {float(r['value_b']):.3f} |"
        assert any(quoted in line and values in line for line in md), (r["contrast"], r["benchmark"], quoted)


def test_05_report(smoke_run):
    root, _ = smoke_run
    md = (root / "report.md").read_text()
    assert "says nothing about the paper's claims" in md and "| claim | paper | ours | agrees? |" in md
    assert "05_compare_report/figures/forest.png" in md
    assert (root / "05_compare_report" / "figures" / "forest.png").is_file()
    html = (root / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3
    import csv

    rows = list(csv.DictReader(open(root / "05_compare_report" / "comparisons.csv")))
    assert {r["contrast"] for r in rows} == {"human_vs_reverse", "human_vs_base", "reverse_vs_base"}
    assert {r["cls"] for r in rows} <= {"enhanced", "degraded", "no significant change", "not measured", "undefined"}
    # opinion sycophancy needs the Hub: offline it is "not measured", never "no significant change"
    assert {r["cls"] for r in rows if r["benchmark"] == "sycophancy_anthropic"} == {"not measured"}


def test_pages_in_a_real_browser(smoke_run):
    """Each executed notebook and report.html, rendered by headless Chromium: images load, no table or page runs off
    the right edge, no 'nan' shown, headings in order; a screenshot of each page is kept in its step's figures/."""
    from hmxnb.runner import browser

    if browser.find_chromium() is None:
        pytest.skip(browser.NO_CHROMIUM)
    root, _ = smoke_run
    found = browser.check_run(root)
    assert sorted(found) == sorted([p.name for p in notebook_steps()] + ["report.html"])
    assert found == {page: [] for page in found}
    shots = sorted(root.glob("*/figures/*_page.png"))
    assert len(shots) == 6 and all(s.stat().st_size > 20_000 for s in shots)


# figures each notebook shows (its saved PNGs, and notebook 05's forest and training curves), whatever the backend
FIGURES_SHOWN = {"01_design_rubric": 2, "02_train_human": 1, "03_train_reverse": 1, "04_benchmarks": 1,
                 "05_compare_report": 2}


@pytest.mark.parametrize("step, n", FIGURES_SHOWN.items())
def test_notebooks_show_their_figures(smoke_run, step, n):
    """The figures appear in the executed notebook as images (here under MPLBACKEND=Agg, as in CI), not as the text
    '<Figure size ...>' or nothing at all."""
    root, _ = smoke_run
    nb = json.loads((root / step / f"{step}.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == n
    assert not any("<Figure size" in "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)


def test_benchmark_progress_is_one_line(smoke_run):
    """Notebook 04's evaluation cell leaves one progress line (all benchmarks × models), not a line per benchmark."""
    root, _ = smoke_run
    nb = json.loads((root / "04_benchmarks" / "04_benchmarks.ipynb").read_text())
    (cell,) = [c for c in nb["cells"] if c["cell_type"] == "code" and "run_all(" in "".join(c["source"])]
    err = "".join("".join(o["text"]) for o in cell["outputs"] if o.get("name") == "stderr")
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("benchmarks: 100%"), lines


# the two notices each generation printed on the GPU run (issue 20): a model-level max_length beside max_new_tokens,
# a GenerationConfig beside generation arguments
GENERATION_NOTICES = ("seem to have been set", "Passing `generation_config` together with generation-related")


@pytest.mark.parametrize("step", FIGURES_SHOWN)
def test_executed_notebooks_print_no_generation_notice(smoke_run, step):
    """No generation notice in an executed notebook's outputs or its kernel's log (hmxnb.chat)."""
    root, _ = smoke_run
    nb = json.loads((root / step / f"{step}.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    texts = ["".join(o.get("text", "")) + json.dumps(o.get("data", {})) for o in outputs]
    log = root / step / "kernel.log"
    texts.append(log.read_text(errors="replace") if log.is_file() else "")
    found = [line for t in texts for line in t.splitlines() if any(n in line for n in GENERATION_NOTICES)]
    assert not found, found
