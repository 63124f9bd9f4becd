"""hmxnb.artifacts: collecting the runs of a sweep for the comparison step."""


import pytest

from hmxnb.artifacts import find_runs, load_run_logs, load_run_records, save_json, save_jsonl


def _fake_run(root, model, seed, n_items=2):
    for step in ("02_train_human", "03_train_reverse", "04_benchmarks"):
        save_json({"params": {"model_name_or_path": model, "seed": seed}}, root / step / "provenance.json")
    save_jsonl([{"benchmark": "b", "item_id": str(i), "model": "human", "correct": True} for i in range(n_items)],
               root / "04_benchmarks" / "samples.jsonl")
    for step in ("02_train_human", "03_train_reverse"):
        (root / step / "train_log.csv").write_text("step,reward\n1,0.1\n2,0.2\n")


def test_single_run_and_sweep(tmp_path):
    _fake_run(tmp_path / "single", "m", 0)
    assert find_runs(tmp_path / "single") == [tmp_path / "single"]
    sweep = tmp_path / "paper"
    _fake_run(sweep / "qwen3-0.6b-seed0", "Qwen/Qwen3-0.6B", 0)
    _fake_run(sweep / "qwen3-0.6b-seed1", "Qwen/Qwen3-0.6B", 1, n_items=3)
    (sweep / "_archive" / "old" / "04_benchmarks").mkdir(parents=True)  # archived outputs are never collected
    runs = find_runs(sweep)
    assert [r.name for r in runs] == ["qwen3-0.6b-seed0", "qwen3-0.6b-seed1"]
    df = load_run_records(runs)
    assert len(df) == 5 and set(df["seed"]) == {0, 1} and set(df["base_model"]) == {"Qwen/Qwen3-0.6B"}
    logs = load_run_logs(runs)
    assert set(logs) == {"human", "reverse"} and len(logs["human"]) == 4 and set(logs["human"]["seed"]) == {0, 1}


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 04 first"):
        load_run_records(find_runs(tmp_path))
