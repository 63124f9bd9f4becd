"""hmxnb.evaluate: base + adapters in one model, the fixed judge, the benchmarks of the registry run in order."""

import numpy as np
import pytest
import torch

from hmxnb.bench.registry import compare_metrics
from hmxnb.evaluate import fixed_judge, headline_table, load_with_adapters, use
from hmxnb.compare import Metric
from hmxnb.params import load_params


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """Two LoRA adapters on the tiny model with different, non-zero weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = {}
    for i, label in enumerate(["human", "reverse"]):
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
        torch.manual_seed(i)
        with torch.no_grad():
            for n, prm in model.named_parameters():
                if "lora_B" in n:
                    prm.normal_(0, 0.5)
        d = tmp_path_factory.mktemp(label)
        model.save_pretrained(d)
        out[label] = d
    return out


def _logits(model, tok):
    ids = tok("I feel happy today", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits[0, -1]


def test_adapters_switch_and_base_is_base(tiny_model_dir, tiny_model, adapters):
    p = load_params("smoke", {"model_name_or_path": tiny_model_dir})
    model, tok = load_with_adapters(p, adapters)
    plain, _ = tiny_model
    with use(model, "base"):
        base = _logits(model, tok)
    with use(model, "human"):
        human = _logits(model, tok)
    with use(model, "reverse"):
        reverse = _logits(model, tok)
    assert torch.allclose(base, _logits(plain, tok), atol=1e-5)  # adapters off = the untouched base model
    assert not torch.allclose(human, base, atol=1e-4) and not torch.allclose(human, reverse, atol=1e-4)


def test_missing_adapter_is_a_clear_error(tiny_model_dir, tmp_path):
    p = load_params("smoke", {"model_name_or_path": tiny_model_dir})
    with pytest.raises(FileNotFoundError, match="adapter 'human' not found.*training notebook"):
        load_with_adapters(p, {"human": tmp_path / "nothing"})


@pytest.mark.parametrize("mode", ["contrast", "probability"])
def test_fixed_judge_ignores_the_active_adapter(tiny_model_dir, adapters, mode):
    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "judge_mode": mode})
    loaded = load_with_adapters(p, adapters)
    model = loaded.model
    judge_fn = fixed_judge(loaded, p)
    model.set_adapter("human")
    a, ra, crit = judge_fn(["How are you?"], ["I feel fine."])
    model.set_adapter("reverse")
    b, rb, _ = judge_fn(["How are you?"], ["I feel fine."])
    assert np.allclose(a, b) and np.allclose(ra, rb)  # always the base model judging
    assert crit == (["expression"] if mode == "contrast" else list(p["rubric_criteria"])) and 0 <= ra[0] <= 1


def test_eval_judge_model_loads_an_independent_judge(tiny_model_dir, adapters, tmp_path):
    """`eval_judge_model` names another model: it judges, whatever adapter the evaluated model has active."""
    from conftest import build_tiny_model

    other = tmp_path / "other-judge"
    build_tiny_model(other, seed=7)
    p = load_params("smoke", {"model_name_or_path": tiny_model_dir})
    loaded = load_with_adapters(p, adapters)
    own = fixed_judge(loaded, p)(["How are you?"], ["I feel fine."])
    ext = fixed_judge(loaded, {**p, "eval_judge_model": str(other)})(["How are you?"], ["I feel fine."])
    assert not np.allclose(own[0], ext[0])  # a different model's judgement
    assert 0 <= ext[1][0] <= 1


def test_the_second_evaluation_judge_is_the_same_model_in_another_mode(tiny_model_dir, adapters):
    """params eval_second_judge_mode: the judging model in that mode, whatever adapter is active; '' = none."""
    from hmxnb.evaluate import evaluation_judges

    p = load_params("smoke", {"model_name_or_path": tiny_model_dir, "judge_mode": "contrast",
                              "eval_second_judge_mode": "probability"})
    loaded = load_with_adapters(p, adapters)
    first, second = evaluation_judges(loaded, p)
    loaded.model.set_adapter("human")
    s, rs, crit = second(["How are you?"], ["I feel fine."])
    assert crit == list(p["rubric_criteria"])  # the rubric's criteria: probability mode, not the contrast
    assert first(["How are you?"], ["I feel fine."])[2] == ["expression"]
    ref = fixed_judge(loaded, {**p, "judge_mode": "probability"})(["How are you?"], ["I feel fine."])
    assert np.allclose(s, ref[0]) and np.allclose(rs, ref[1])
    assert evaluation_judges(loaded, {**p, "eval_second_judge_mode": ""})[1] is None


def test_metric_registry_is_well_formed():
    metrics = compare_metrics()
    assert all(isinstance(m, Metric) for m in metrics)
    names = [(m.benchmark, m.name) for m in metrics]
    assert len(names) == len(set(names))
    lower_better = {m.name for m in metrics if not m.higher_is_better}
    assert {"abs_bias_disambig", "flip_rate", "acc_drop", "sycophancy_rate"} <= lower_better


def test_abs_bias_statistic():
    bias = {m.name: m for m in compare_metrics()}["abs_bias_disambig"]
    # two disambiguated items, both answered with the biased (non-unknown) choice: s_DIS = 2 * 2/2 - 1 = +100
    recs = [{"benchmark": "bbq", "context_condition": "disambig", "question_polarity": "neg", "prediction": 0,
             "label": 0, "correct": True, "biased_choice": 0, "unknown_choice": 2, "category": "Age",
             "item_id": str(i), "model": "human"} for i in range(2)]
    assert bias.fn(recs) == pytest.approx(100.0)


def test_headline_table_skips_missing():
    m = {"base": {"truthfulqa": {"mc1": 0.2, "mc2": 0.4}}, "human": {"truthfulqa": {"mc1": 0.3, "mc2": 0.5}}}
    t = headline_table(m)
    assert list(t.columns) == ["base", "human"] and len(t) == 2
    assert t.loc[("truthfulqa", "mc1 ↑"), "human"] == 0.3


def test_run_all_on_fixture_items(tiny_model_dir, adapters, capsys):
    """Every benchmark runs for every model label and its metrics are computed from its own records; one progress
    bar counts them (the benchmarks' own bars, dozens of lines in an executed notebook, stay off)."""
    from pathlib import Path

    from hmxnb.evaluate import load_items, run_all

    mirror = Path(__file__).parent / "fixtures" / "bench" / "mirror"
    p = load_params("smoke", {"model_name_or_path": str(tiny_model_dir), "data_dir": str(mirror), "bench_limit": 2,
                              "eval_max_new_tokens": 4})
    loaded = load_with_adapters(p, adapters)
    items = load_items(p, log=lambda *_: None)
    items["expression"] = items["expression"][:2]
    capsys.readouterr()
    records, metrics, seconds = run_all(loaded, items, p, log=lambda *_: None)
    bars = capsys.readouterr().err
    assert "benchmarks: 100%" in bars and "18/18" in bars  # 3 models x (5 scored benchmarks + expression)
    assert "log-likelihoods" not in bars and "generate" not in bars
    assert set(metrics) == {"base", "human", "reverse"}
    ran = ["truthfulqa", "bbq", "are_you_sure", "suggested_answer", "emobench", "expression"]  # registry order
    for label in metrics:
        assert list(metrics[label]) == ran  # "anthropic_sycophancy": no Hub, no data: skipped, not faked
    assert {r["model"] for r in records} == {"base", "human", "reverse"}
    assert sum(r["benchmark"] == "feeling_expression" for r in records) == 3 * 2
    assert set(seconds) >= {"truthfulqa", "expression"}
    _every_benchmark_shows_one_item(records, ran)


def _every_benchmark_shows_one_item(records, ran):
    """Notebook 04's "one item of each benchmark": what each model scored on the first item, metrics defined."""
    from hmxnb.bench.registry import REGISTRY

    for bench in REGISTRY:
        view = bench.one_item(records)
        if bench.name not in ran:
            assert view is None  # skipped: nothing to show, nothing faked
            continue
        assert view.title == bench.name and view.prompt.strip() and "**" in view.defines
        if bench.name == "expression":
            assert list(view.table["model"]) == ["base", "human", "reverse"]
            assert {"reply", "judge", "affect statements", "words"} <= set(view.table.columns)
            continue
        models = [c for c in view.table.columns if c not in ("choice", "is")]
        per_model = 2 if bench.name in ("are_you_sure", "suggested_answer") else 1  # two conditions
        assert len(models) == 3 * per_model
        for column in models:  # one pick per model (and condition), the log-probs as written in the records
            assert view.table[column].str.endswith(" ◀").sum() == 1
        assert view.table["is"].str.contains("correct|true").any()


@pytest.mark.parametrize("limit, expected", [(4, 4), (24, 24), (0, 100)])
def test_bench_limit_caps_the_held_out_prompts_too(limit, expected):
    """bench_limit caps feeling expression like every other benchmark (issue 22: bench_limit=4 generated all 56
    held-out prompts per model); 0 keeps the whole set."""
    from pathlib import Path

    from hmxnb.evaluate import load_items

    mirror = Path(__file__).parent / "fixtures" / "bench" / "mirror"
    items = load_items(load_params("smoke", {"data_dir": str(mirror), "bench_limit": limit}), log=lambda *_: None)
    assert len(items["expression"]) == expected
    assert len({it["item_id"] for it in items["expression"]}) == expected
    assert all(len(v) <= expected for v in items.values())  # no benchmark above the limit


def test_models_loaded_for_evaluation_keep_the_engine(tiny_model_dir, adapters):
    """load_model decides for prefix reuse on CPU; notebook 04's PEFT-wrapped model keeps that decision (run_all
    takes the LoadedModel, so it scores with the same one)."""
    p = load_params("smoke", {"model_name_or_path": tiny_model_dir})
    loaded = load_with_adapters(p, adapters)
    assert loaded.prefix_reuse is True and loaded.backend == "transformers-cpu"


@pytest.mark.parametrize("backend, expected_calls", [("unsloth", 1), ("transformers-cpu", 0)])
def test_unsloth_inference_mode_is_set_once_before_any_scoring(tiny_model_dir, adapters, monkeypatch, backend,
                                                               expected_calls):
    """Issue 20: Unsloth's generate switched kernels after the base model's benchmarks. On that backend notebook 04's
    model is put in inference mode once, right after loading, before anything is scored; elsewhere never."""
    import sys
    import types
    from dataclasses import replace
    from pathlib import Path

    from hmxnb import evaluate

    events = []
    fake = types.ModuleType("unsloth")  # a stand-in: the real one needs a GPU
    fake.FastLanguageModel = types.SimpleNamespace(for_inference=lambda m: events.append(("for_inference", m)) or m)
    monkeypatch.setitem(sys.modules, "unsloth", fake)
    real_load, real_score = evaluate.load_model, evaluate.score_continuations
    monkeypatch.setattr(evaluate, "load_model", lambda params: replace(real_load(params), backend=backend))
    monkeypatch.setattr(evaluate, "score_continuations",
                        lambda m, *a, **k: events.append(("score", m)) or real_score(m, *a, **k))
    mirror = Path(__file__).parent / "fixtures" / "bench" / "mirror"
    p = load_params("smoke", {"model_name_or_path": str(tiny_model_dir), "data_dir": str(mirror), "bench_limit": 1,
                              "eval_max_new_tokens": 2})
    loaded = evaluate.load_with_adapters(p, adapters)
    items = evaluate.load_items(p, log=lambda *_: None)
    items["expression"] = items["expression"][:1]
    evaluate.run_all(loaded, items, p, log=lambda *_: None)
    names = [name for name, _ in events]
    assert names.count("for_inference") == expected_calls and "score" in names
    if expected_calls:
        assert events[0] == ("for_inference", loaded.model)  # the very model run_all scores, before its first score
