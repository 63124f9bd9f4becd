"""hmxnb.bench.registry: one object per benchmark, read by notebook 04 (evaluate), 05 (compare, claims) and the report.

The toy benchmark below is added by one registry entry and then seen everywhere: its items load, it is evaluated for
every model, shown in notebook 04's table, compared in notebook 05 and reported with the claim it feeds.
"""

import ast
from contextlib import nullcontext
from pathlib import Path

import pytest

from hmxnb import paper
from hmxnb.bench import registry
from hmxnb.bench.benchmark import Benchmark
from hmxnb.bench.common import mean, record
from hmxnb.chat import ChatSettings
from hmxnb.compare import accuracy
from hmxnb.models import LoadedModel
from hmxnb.params import load_params

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(__file__).parent / "fixtures" / "bench" / "mirror"
TOY = "toy_arithmetic"
TOY_ITEMS = [{"item_id": f"sum-{i}", "question": f"{i} + 1 ="} for i in range(40)]


class FakePeftModel:
    """Stands in for the PEFT model of notebook 04: records which adapter is active when the toy is evaluated."""

    def __init__(self):
        self.active = None

    def set_adapter(self, label):
        self.active = label

    def disable_adapter(self):
        self.active = "base"
        return nullcontext()


def _evaluate_toy(model, tokenizer, items, label, ctx):
    """The human-like model answers every item, the others every second one (a known +0.5 difference)."""
    with ctx.use(label):
        assert model.active == label  # evaluated as the model it is labelled
        return [record(TOY, it, label, it["question"], ["right", "wrong"], [0.0, -1.0], 0,
                       label == "human" or i % 2 == 0) for i, it in enumerate(items)]


def _metrics_toy(records):
    return {"acc": mean(r["correct"] for r in records), "n": len(records)}


TOY_BENCHMARK = Benchmark(TOY, lambda params, loaded: list(TOY_ITEMS), _evaluate_toy, _metrics_toy,
                          headline=(("acc", True),), compared=(accuracy(TOY, "acc", claim=paper.TRUTHFULNESS),))


@pytest.fixture
def with_toy(monkeypatch):
    """The registry with the toy benchmark appended: the one line a new benchmark needs."""
    monkeypatch.setattr(registry, "REGISTRY", [*registry.REGISTRY, TOY_BENCHMARK])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the registry's other metrics have no items here: empty means
def test_a_benchmark_added_by_one_registry_line_is_evaluated_compared_and_reported(with_toy, tmp_path):
    from hmxnb.compare import compare
    from hmxnb.evaluate import headline_table, load_items, run_all
    from hmxnb.report import build_report

    params = load_params("smoke", {"data_dir": str(MIRROR), "bench_limit": 2})
    items = load_items(params, log=lambda *_: None)
    assert items[TOY] == TOY_ITEMS and items["truthfulqa"]  # loaded with the others
    only_toy = {key: (value if key == TOY else []) for key, value in items.items()}
    loaded = LoadedModel(FakePeftModel(), None, "transformers", "fp32", prefix_reuse=False, chat=ChatSettings())
    records, metrics, _ = run_all(loaded, only_toy, params, log=lambda *_: None)
    assert {label: m[TOY]["acc"] for label, m in metrics.items()} == {"base": 0.5, "human": 1.0, "reverse": 0.5}
    assert headline_table(metrics).loc[(TOY, "acc ↑"), "human"] == 1.0
    results = compare(records, registry.compare_metrics(), n_resamples=200)
    toy = results[(results["benchmark"] == TOY) & (results["contrast"] == "human_vs_reverse")].iloc[0]
    assert (toy["diff"], toy["n_items"], toy["cls"]) == (0.5, 40, "enhanced")
    md = build_report(tmp_path, results, profile="smoke")["report_md"].read_text()
    assert f"{TOY}/acc" in md
    claim = next(line for line in md.splitlines() if line.startswith("| Truthful question answering degrades |"))
    assert "enhanced in 1 of 1" in claim and claim.rstrip().endswith("| no |")  # fed by the toy, as declared


def test_names_are_unique_and_shared_item_sets_share_their_loader():
    names = [b.name for b in registry.REGISTRY]
    assert len(names) == len(set(names))
    metrics = [(m.benchmark, m.name) for m in registry.compare_metrics()]
    assert len(metrics) == len(set(metrics))
    loaders = {}
    for b in registry.REGISTRY:
        assert loaders.setdefault(b.item_set, b.load) is b.load, f"{b.name}: item set '{b.item_set}' loads twice"


def test_every_paper_claim_is_fed_and_every_fed_claim_exists():
    """A claim no registered metric feeds would always read 'not measured'; a typo in a claim key would drop rows."""
    declared = {m.claim for m in registry.compare_metrics()} - {None}
    known = {c["key"] for c in paper.PAPER_CLAIMS} | {paper.LARGEST_DEGRADATION}
    assert declared == known


def test_training_target_metrics_feed_the_training_target_claim():
    for m in registry.compare_metrics():
        assert m.training_target == (m.claim == paper.TRAINING_TARGET), f"{m.benchmark}/{m.name}"


def _string_constants(path: Path) -> list[tuple[str, str]]:
    """(value, source line) of every string constant in a module."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(node.value, lines[node.lineno - 1]) for node in ast.walk(ast.parse("\n".join(lines)))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def test_each_benchmark_name_is_written_once_in_the_package():
    """Issue 21: one benchmark was named in three tables with three naming schemes. Now every benchmark name, item
    set and records' `benchmark` value is a string in exactly one place of the modules that read the registry (the
    same word as a data folder name, on a line that reads `data_dir`, is a path, not a name)."""
    modules = [*sorted((ROOT / "hmxnb" / "bench").glob("*.py")), *(ROOT / "hmxnb" / f"{m}.py" for m in (
        "evaluate", "compare", "claims", "aggregate", "report", "plots",
        "paper", "formatting"))]
    found = [value for path in modules for value, line in _string_constants(path) if "data_dir" not in line]
    names = {b.name for b in registry.REGISTRY} | {b.item_set for b in registry.REGISTRY}
    names |= {m.benchmark for m in registry.compare_metrics()}
    assert {name: found.count(name) for name in names} == {name: 1 for name in names}


def _readme_example() -> dict:
    """The example module of README's "Adding a benchmark", executed as hmxnb/bench/arc.py would be."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Adding a benchmark"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("```\n", 1)]
    namespace = {"__name__": "hmxnb.bench.arc", "__package__": "hmxnb.bench"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_the_readme_example_is_a_working_benchmark(tmp_path):
    """README shows adding a benchmark; run its module: load from a data folder, evaluate, metrics, comparison."""
    import json

    from hmxnb.bench.benchmark import EvalContext

    arc = _readme_example()
    (tmp_path / "arc").mkdir()
    rows = [{"id": f"q{i}", "question": f"{i} + 1?", "choices": [str(i + 1), str(i + 2)], "label": 0} for i in range(6)]
    (tmp_path / "arc" / "easy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = arc["BENCHMARK"]
    items = bench.load({"data_dir": str(tmp_path), "bench_limit": 4, "seed": 0}, {})
    assert len(items) == 4 and {it["item_id"] for it in items} <= {r["id"] for r in rows}

    def scorer(model, tokenizer, requests, batch_size):  # the first choice always scores best
        return [[0.0] + [-1.0] * (len(choices) - 1) for _, choices in requests]

    ctx = EvalContext(use=lambda label: nullcontext(), batch_size=2, scorer=scorer)
    records = bench.evaluate(None, None, items, "human", ctx)
    assert [r["benchmark"] for r in records] == ["arc_easy"] * 4 and all(r["correct"] for r in records)
    assert bench.metrics(records) == {"acc": 1.0, "n": 4}
    assert [(m.benchmark, m.name, m.kind) for m in bench.compared] == [("arc_easy", "acc", "binary")]


def test_choice_roles_and_a_new_benchmark_shows_one_item_for_free():
    from hmxnb.bench.benchmark import choice_roles

    rec = {"choices": ["a", "b", "c"], "label": 1, "biased_choice": 2, "unknown_choice": 0}
    assert choice_roles(rec) == {1: "correct", 2: "stereotyped", 0: "unknown"}
    assert choice_roles({"labels": [1, 0, 1], "suggested": 1}) == {0: "true", 2: "true", 1: "user's suggestion"}
    assert choice_roles({"label": None, "biased_choice": None}) == {}
    records = [record(TOY, it, label, it["question"], ["right", "wrong"], [-0.5, -1.5 if label == "base" else 0.0],
                      0 if label == "base" else 1, label == "base") for label in ("base", "human")
               for it in TOY_ITEMS[:2]]
    view = TOY_BENCHMARK.one_item(records)
    assert view.title == TOY and view.prompt == "0 + 1 ="
    assert view.table.to_dict("list") == {"choice": ["right", "wrong"], "is": ["", ""],
                                          "base": ["-0.50 ◀", "-1.50"], "human": ["-0.50", "0.00 ◀"]}
