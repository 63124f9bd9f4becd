"""Tests for hmxnb/report.py: the report built from the synthetic fixture in tests/fixtures/report/.

The fixture comparisons.csv is a hand-made results table (two models x two seeds x two contrasts x five
metrics) built so that the claims check has known answers; human_log.csv / reverse_log.csv are training
logs with two seeds each; examples.jsonl holds three prompts answered by base, human and reverse.
"""

import base64
import html
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from hmxnb import plots, report

FIXTURES = Path(__file__).parent / "fixtures" / "report"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load():
    results = pd.read_csv(FIXTURES / "comparisons.csv")
    logs = {"human": FIXTURES / "human_log.csv", "reverse": FIXTURES / "reverse_log.csv"}
    examples = [json.loads(line) for line in (FIXTURES / "examples.jsonl").read_text().splitlines()]
    return results, logs, examples


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    results, logs, examples = _load()
    out = tmp_path_factory.mktemp("report")
    paths = report.build_report(out, results, training_logs=logs, examples=examples, profile="smoke",
                                model_names=["embedded:smollm2-135m-instruct"])
    return out, paths


def test_files_exist(built):
    out, paths = built
    for name in ("report.md", "report.html", "comparisons.csv", "summary.json",
                 "figures/forest.png", "figures/heatmap.png", "figures/training_curves.png"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert paths["report_html"] == out / "report.html"
    assert all((out / "figures" / n).read_bytes().startswith(PNG_MAGIC) for n in ("forest.png", "heatmap.png"))


def test_html_stands_alone_with_embedded_figures(built):
    page = (built[0] / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # forest, heatmap, training curves
    assert all(base64.b64decode(img).startswith(PNG_MAGIC) for img in images)
    assert "figures/" not in page  # no links to files outside the page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_markdown_links_figures_next_to_it(built):
    out = built[0]
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", md)
    assert sorted(links) == ["figures/forest.png", "figures/heatmap.png", "figures/training_curves.png"]
    assert all((out / link).is_file() for link in links)


@pytest.mark.parametrize(
    "claim, agrees",
    [
        # 3 of 4 enhanced (one CI covers 0)
        ("Human-like models are more robust to sycophancy-inducing questions", "partly"),
        ("Less bias in disambiguated BBQ contexts", "yes"),  # bias down in every model and seed
        ("Truthful question answering degrades", "no"),  # no significant truthfulqa change
        ("Expression of feelings, intentions and self-awareness is enhanced (the training target)", "yes"),  # +35-40%
        # 6/8 = 75% (training target left out), within 10 points of 81.4%
        ("Share of results improved or degraded by < 2% (< 2 pp for rates and bias scores; training target excluded)",
         "yes"),
        ("Largest degradation", "yes"),  # Gemma 2 IT 2B, BBQ acc_ambig, 15%
        ("Results degraded by more than 10% (10 pp for rates and bias scores)", "yes"),  # exactly one
    ],
)
def test_claims_table_in_both_documents(built, claim, agrees):
    out = built[0]
    md = (out / "report.md").read_text()
    assert "| claim | paper | ours | agrees? |" in md
    row = next(line for line in md.splitlines() if line.startswith(f"| {claim} |"))
    assert row.rstrip().endswith(f"| {agrees} |")
    assert f"<td>{html.escape(claim)}</td>" in (out / "report.html").read_text()


def test_largest_degradation_numbers(built):
    summary = json.loads((built[0] / "summary.json").read_text())
    worst = summary["largest_degradation"]
    assert (worst["base_model"], worst["metric"]) == ("Gemma 2 IT 2B", "acc_ambig")
    assert worst["degradation"] == pytest.approx(15.0) and worst["unit"] == "%"  # seeds at -15.6 and -14.4
    assert summary["share_pct"] == pytest.approx(75.0)  # 6 of 8: the feelings rows (training target) left out
    assert [t["improvement"] for t in summary["training_target"]] == pytest.approx([40.0, 35.0])  # shown apart
    # the paragraph writes the change as the claims table does, signed, beside the paper's
    text = (built[0] / "report.md").read_text()
    assert ("the largest degradation is Gemma 2 IT 2B, bbq/acc_ambig, -15.0% (paper: Gemma 2 IT 2B, BBQ ambiguous "
            "accuracy, -15.0%)") in text


def test_seed_variance_is_shown(built):
    md = (built[0] / "report.md").read_text()
    assert "mean ± sd over seeds" in md
    assert "+40.0 ± 0.8%" in md  # Qwen feelings: +39.4 and +40.6 across the two seeds
    assert md.count("| Qwen3-0.6B | 0 | sycophancy_are_you_sure/acc_after_challenge |") == 2  # per seed and contrast


def test_smoke_scale_warning(built):
    out = built[0]
    sentence = "A 135M smoke model says nothing about the paper's claims"
    assert sentence in (out / "report.md").read_text()
    assert sentence.replace("'", "&#x27;") in (out / "report.html").read_text()


@pytest.mark.parametrize(
    "profile, models, seeds, expected",
    [
        ("smoke", ["x"], 1, "135M smoke model says nothing"),  # smoke profile by name
        ("custom", ["HuggingFaceTB/SmolLM2-135M-Instruct"], 1, "135M smoke model says nothing"),  # 135M by model name
        ("small", ["Qwen3-0.6B"], 1, "weak evidence"),  # one model, one seed
        ("paper", ["a", "b", "c", "d", "e"], 3, "not as an exact replication"),  # full paper profile
    ],
)
def test_scale_note(profile, models, seeds, expected):
    assert expected in report.scale_note(profile, models, seeds, 100)


def test_example_replies_escaped_in_html(built):
    out = built[0]
    page = (out / "report.html").read_text()
    assert "I feel calm when it rains &lt;and&gt; I like it." in page
    assert "Rain is precipitation \\| water from clouds." in (out / "report.md").read_text()  # pipe escaped


def test_example_replies_table():
    recs = [
        {"prompt": "p1", "model": "base", "completion": "a" * 50},
        {"prompt": "p1", "model": "human", "completion": "I feel fine"},
        {"prompt": "p1", "model": "reverse", "completion": "Fine."},
        {"prompt": "p2", "model": "base", "completion": "only base answered"},  # incomplete: left out
    ]
    table = report.example_replies(recs, n=5, max_chars=10)
    assert table.columns.tolist() == ["prompt", "base", "human", "reverse", "shown"]
    assert table["prompt"].tolist() == ["p1"]
    assert table.loc[0, "base"] == "a" * 9 + "…"  # cut at 10 characters


def test_example_replies_add_the_prompts_where_the_judge_scores_differ_most():
    scores = {"p1": (0.5, 0.5, 0.5), "p2": (0.1, 0.9, 0.2), "p3": (0.4, 0.5, 0.45), "p4": (0.3, 0.2, 0.9)}
    recs = [{"prompt": p, "model": m, "completion": f"{p} {m}", "score": s}
            for p, row in scores.items() for m, s in zip(("base", "human", "reverse"), row)]
    table = report.example_replies(recs, n=1, most_different=2)
    assert table["prompt"].tolist() == ["p1", "p2", "p4"]  # the first, then gaps 0.8 and 0.7 (p3's 0.1 left out)
    assert table["shown"].tolist() == ["first prompts", "judge-score gap 0.80", "judge-score gap 0.70"]
    assert table.loc[1, "human"] == "p2 human"


def test_training_curves_side_by_side():
    _, logs, _ = _load()
    fig = plots.plot_training_curves(logs)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["human", "reverse"]  # first row: one column per direction
    assert len(fig.axes) == 3 * 2  # reward, kl, completion length x two directions
    assert len(fig.axes[0].get_lines()) == 2  # one line per seed


def test_training_log_needs_step_and_reward():
    with pytest.raises(ValueError, match="lacks columns"):
        plots.load_training_logs({"human": pd.DataFrame({"step": [1], "loss": [0.1]})})


def test_report_without_optional_parts(tmp_path):
    results, _, _ = _load()
    paths = report.build_report(tmp_path, results.iloc[:0], profile="smoke")  # nothing measured yet
    json.loads(paths["summary_json"].read_text(), parse_constant=pytest.fail)  # strict JSON: no NaN / Infinity
    md = paths["report_md"].read_text()
    assert "| claim | paper | ours | agrees? |" in md
    assert "not measured" in md
    assert "training_curves" not in md and "What the models say" not in md


def test_expression_table_keeps_only_the_training_target():
    results, _, _ = _load()
    rows = results[results["benchmark"] == "truthfulqa_mc1"].head(2).copy()
    rows["benchmark"], rows["training_target"] = ["feeling_expression", "affect_statements"], True
    results = results[~results["training_target"]]
    table = report.expression_table(pd.concat([results, rows], ignore_index=True))
    assert list(table["metric"]) == ["feeling_expression", "affect_statements"]
    assert {"A − B [95% CI]", "class", "contrast"} <= set(table.columns)
    assert report.expression_table(results).empty  # no training-target rows left


def test_report_has_the_expression_section(built):
    out, paths = built
    md = paths["report_md"].read_text()
    assert "The training target: feeling expression on held-out prompts" in md and "carries over" in md


def test_report_reads_verdict_claims_examples_then_details(built):
    md = (built[0] / "report.md").read_text()
    order = ["> Verdict, human vs reverse", "## The paper's claims beside ours", "## What the models say",
             "## The training target", "## Every metric", "## All comparisons (per seed)"]
    positions = [md.index(s) for s in order]
    assert positions == sorted(positions)
    verdict = md.splitlines()[2]
    assert "The training target moved: enhanced: feeling_expression/expression_score" in verdict  # first and apart
    assert "7 enhanced (" in verdict and "2 degraded (bbq/acc_ambig (Gemma 2 IT 2B, seed 0): 0.422 vs 0.500, " \
        "difference -0.078 (95% CI -0.108 to -0.048, -15.6%)" in verdict  # each with its CI
    assert "7 showed no significant change" in verdict


def test_no_nan_shown_as_a_number(tmp_path):
    results, _, _ = _load()
    missing = results.iloc[[0]].assign(metric="opinion_rate", n_items=0, value_a=float("nan"), value_b=float("nan"),
                                       diff=float("nan"), change=float("nan"), improvement=float("nan"),
                                       ci_low=float("nan"), ci_high=float("nan"), p_value=float("nan"),
                                       p_holm=float("nan"),
                                       cls="not measured")
    paths = report.build_report(tmp_path, pd.concat([results, missing], ignore_index=True), profile="smoke")
    for name in ("report_md", "report_html"):
        text = re.sub(r"base64,[^\"]+", "", paths[name].read_text())
        assert not re.search(r"\bnan\b", text, re.I), re.search(r".{60}\bnan\b.{20}", text, re.I).group(0)
    assert "sycophancy_are_you_sure/opinion_rate (not measured)" in paths["report_md"].read_text()


def test_report_names_the_sweep_members_left_out(tmp_path):
    results, _, _ = _load()
    paths = report.build_report(tmp_path, results, profile="paper", left_out={"qwen3-8b-seed2": "failed"})
    md = paths["report_md"].read_text()
    assert "Not compared: qwen3-8b-seed2 (failed)" in md.split("\n## ")[0]  # said before the first section
    again = report.build_report(tmp_path / "all", results, profile="paper")
    assert "Not compared" not in again["report_md"].read_text()


def test_a_run_that_did_not_learn_is_named_at_the_training_curves(tmp_path):
    """hmxnb.health: most completions masked from the loss -> one WARNING line per such run in the report."""
    results, logs, examples = _load()
    human = pd.read_csv(logs["human"])
    masked = human["seed"] == human["seed"].iloc[0]
    human["health/masked_share"] = masked.astype(float)  # every completion of the first seed's run masked
    paths = report.build_report(tmp_path, results, training_logs={**logs, "human": human}, examples=examples,
                                profile="smoke", model_names=["embedded:smollm2-135m-instruct"])
    md = paths["report_md"].read_text() if "report_md" in paths else (tmp_path / "report.md").read_text()
    warnings = [line for line in md.splitlines() if "training is not learning" in line]
    assert len(warnings) == 1 and "human" in warnings[0] and "100% of completions were masked" in warnings[0]
    assert not [w for w in report.training_warnings(logs)]  # the fixture's own runs learned


@pytest.mark.parametrize("mode, expected", [
    ("contrast", "persona-contrast self-reward (our stand-in), not the paper's rubric judgement"),
    ("request", "request-contrast self-reward (our stand-in), not the paper's rubric judgement"),
    ("probability", "rubric judgement, as in the paper, with our own rubric"),
    ("generate", "wrote a 1-5 score per criterion"),
    (None, "Which self-judge trained the models was not given"),
])
def test_scale_note_names_the_judge_that_trained_the_models(mode, expected):
    assert expected in report.scale_note("demo", ["m"], 1, 100, judge_mode=mode)


def test_report_names_the_judge_recorded_in_the_steps_provenance(tmp_path):
    """Notebook 05 writes provenance.json (its params) before building the report: the report reads judge_mode there."""
    results, logs, _ = _load()
    (tmp_path / "provenance.json").write_text(json.dumps({"params": {"judge_mode": "contrast"}}))
    report.build_report(tmp_path, results, profile="demo", model_names=["m"])
    md = (tmp_path / "report.md").read_text()
    assert "persona-contrast self-reward (our stand-in), not the paper's rubric judgement" in md
    report.build_report(tmp_path, results, profile="demo", model_names=["m"], judge_mode="probability")
    assert "rubric judgement, as in the paper" in (tmp_path / "report.md").read_text()  # given beats recorded


@pytest.mark.parametrize("recorded, says", [
    ({"judge_mode": "request", "eval_second_judge_mode": "auto"},
     "second evaluation judge here: the persona contrast (judge_mode contrast)"),
    ({"judge_mode": "contrast", "eval_second_judge_mode": "auto"},
     "second evaluation judge here: the request contrast (judge_mode request)"),
    ({"judge_mode": "contrast", "eval_second_judge_mode": ""}, "No second evaluation judge ran here"),
    ({}, None),
])
def test_report_names_the_second_evaluation_judge_recorded_in_the_provenance(tmp_path, recorded, says):
    results, _, _ = _load()
    (tmp_path / "provenance.json").write_text(json.dumps({"params": recorded}))
    report.build_report(tmp_path, results, profile="demo", model_names=["m"])
    md = (tmp_path / "report.md").read_text()
    assert report.EXPRESSION_NOTE in md
    assert (says in md) if says else "second evaluation judge here" not in md and "No second evaluation" not in md


def test_published_reports_point_into_the_step_folder(tmp_path):
    """build_report(publish_to=...) writes the reports at the profile's top as notebook 05 used to by hand: report.md
    with figure links into the step folder, report.html the same bytes (figures embedded); atomically, no leftovers."""
    results, logs, examples = _load()
    step = tmp_path / "05_compare_report"
    paths = report.build_report(step, results, training_logs=logs, examples=examples, profile="smoke",
                                publish_to=tmp_path)
    assert (paths["published_md"], paths["published_html"]) == (tmp_path / "report.md", tmp_path / "report.html")
    inner, top = paths["report_md"].read_text(), paths["published_md"].read_text()
    assert top == inner.replace("](figures/", "](05_compare_report/figures/") and top != inner
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", top)
    assert links and all((tmp_path / link).is_file() for link in links)  # every figure resolves from the top
    assert paths["published_html"].read_bytes() == paths["report_html"].read_bytes()
    assert not [p.name for p in tmp_path.rglob("*.tmp")]  # written through a temporary file, then renamed
    assert "published_md" not in report.build_report(tmp_path / "alone", results, profile="smoke")


def test_notebook_05_leaves_the_report_files_to_build_report():
    """Issue 21: notebook 05's last cell rewrote report paths and copied files by hand (write_text, shutil.copy);
    publishing is build_report's job, so the notebook holds no file writing of its own."""
    import nbformat

    nb = nbformat.read(Path(__file__).parents[1] / "notebooks" / "05_compare_report.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "publish_to=out.parent" in code
    assert not [w for w in ("shutil", "write_text", ".replace(\"](figures/") if w in code]


def test_report_describes_training_from_the_training_steps_record(tmp_path):
    """`--from 04 --force --set judge_mode=request` on a finished run: the adapters were trained with the persona
    contrast. The report names the judge that trained them (02's record, not the params given to 05) and says at the
    top which params differ. Before: "training used judge_mode: request", no warning."""
    results, _, _ = _load()
    trained = {"judge_mode": "contrast", "learning_rate": 5e-4, "eval_second_judge_mode": "auto", "bench_limit": 5}
    now = {**trained, "judge_mode": "request", "bench_limit": 100, "slurm_time": "1:00:00"}
    for step, params in (("02_train_human", trained), ("03_train_reverse", trained), ("04_benchmarks", now),
                         ("05_compare_report", now)):
        (tmp_path / step).mkdir()
        (tmp_path / step / "provenance.json").write_text(json.dumps({"params": params}))
    report.build_report(tmp_path / "05_compare_report", results, profile="demo", model_names=["m"], runs=[tmp_path])
    md = (tmp_path / "05_compare_report" / "report.md").read_text()
    assert "persona-contrast self-reward (our stand-in)" in md and "request-contrast self-reward" not in md
    top = md.split("\n\n")[1]  # the first paragraph after the title
    assert top.startswith("Params differ from training.") and "judge_mode 'contrast' in training, 'request' here" in top
    assert "bench_limit" not in top and "slurm_time" not in top  # evaluation-only and scheduling keys
    assert "second evaluation judge here: the persona contrast" in md  # 04's record: auto with judge_mode request

    (tmp_path / "05_compare_report" / "provenance.json").write_text(json.dumps({"params": trained}))
    report.build_report(tmp_path / "05_compare_report", results, profile="demo", model_names=["m"], runs=[tmp_path])
    assert "Params differ from training" not in (tmp_path / "05_compare_report" / "report.md").read_text()
