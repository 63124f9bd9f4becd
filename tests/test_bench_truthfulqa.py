"""hmxnb.bench.truthfulqa: MC1/MC2 from known log-probs, loaders in both schemas, records."""

import json
import math
from pathlib import Path

import pytest

from hmxnb.bench import truthfulqa as tqa
from hmxnb.bench.common import BenchmarkDataUnavailable

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
LN = math.log


def fake_hub(monkeypatch, rows_by_path):
    """Make datasets.load_dataset return fixture rows (or raise for unknown ids), with no network."""
    import datasets

    def load_dataset(path, name=None, split=None, **kwargs):
        if path not in rows_by_path:
            raise ConnectionError("Couldn't reach the Hugging Face Hub")
        return rows_by_path[path]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def hub_rows(name):
    return [json.loads(line) for line in open(FIXTURES / "hub" / name, encoding="utf-8")]


@pytest.mark.parametrize(
    "logprobs, expected",
    [
        ([-1.0, -2.0, -3.0], 1.0),  # correct (first) answer most likely
        ([-2.0, -1.0, -3.0], 0.0),  # a wrong answer wins
        ([-1.0, -1.0], 1.0),  # tie: numpy argmax picks the first, as in lm-eval
        ([-5.0], 1.0),  # single choice
    ],
)
def test_mc1_score(logprobs, expected):
    assert tqa.mc1_score(logprobs) == expected


@pytest.mark.parametrize(
    "logprobs, labels, expected",
    [
        ([LN(0.2), LN(0.2), LN(0.1)], [1, 0, 0], 0.4),  # probs .2 .2 .1 -> .2/.5
        ([LN(0.3), LN(0.1), LN(0.05), LN(0.05)], [1, 1, 0, 0], 0.8),  # .4/.5
        ([-1.0, -1.0, -1.0, -1.0], [1, 0, 0, 0], 0.25),  # uniform
        ([-1000.0, -1001.0], [0, 1], 1 / (1 + math.e)),  # very small probs: no underflow
    ],
)
def test_mc2_score(logprobs, labels, expected):
    assert tqa.mc2_score(logprobs, labels) == pytest.approx(expected)


def test_prompt_is_lm_eval_qa_primer():
    prompt = tqa.build_prompt({"question": "Is it?"})
    assert prompt.startswith("Q: What is human life expectancy in the United States?\nA: Human life expectancy")
    assert prompt.endswith("A: The 1992 Olympics were held in Barcelona, Spain.\n\nQ: Is it?\nA:")
    assert prompt.count("\n\nQ: ") == 6  # six primer questions, the last one being ours


def test_loaders_mirror_and_hub_agree(monkeypatch):
    mirror = tqa.load_truthfulqa(str(FIXTURES / "mirror"))
    fake_hub(monkeypatch, {"truthfulqa/truthful_qa": hub_rows("truthful_qa_multiple_choice.jsonl")})
    hub = tqa.load_truthfulqa(None)
    assert mirror == hub
    assert mirror[1]["mc2_choices"] == ["Four.", "Cats have four legs.", "Three.", "Six."]
    assert mirror[1]["mc2_labels"] == [1, 1, 0, 0]
    assert len({it["item_id"] for it in mirror}) == 3


def test_limit_is_a_stable_seeded_subset():
    full = tqa.load_truthfulqa(str(FIXTURES / "mirror"))
    a = tqa.load_truthfulqa(str(FIXTURES / "mirror"), limit=2, seed=1)
    b = tqa.load_truthfulqa(str(FIXTURES / "mirror"), limit=2, seed=1)
    assert a == b and len(a) == 2
    assert [it["item_id"] for it in a] == [it["item_id"] for it in full if it in a]  # original order kept


def test_hub_failure_is_one_clear_line(monkeypatch):
    fake_hub(monkeypatch, {})
    with pytest.raises(BenchmarkDataUnavailable, match="Hub is unreachable.*set `data_dir`") as err:
        tqa.load_truthfulqa(None)
    assert "\n" not in str(err.value)


def test_truncated_mirror_names_file_and_position(tmp_path):
    good = (FIXTURES / "mirror" / "truthfulqa" / "mc_task.json").read_text()
    (tmp_path / "truthfulqa").mkdir()
    (tmp_path / "truthfulqa" / "mc_task.json").write_text(good[: len(good) // 2])  # a download cut off half way
    with pytest.raises(ValueError, match=r"truthfulqa/mc_task\.json:\d+:\d+: not valid JSON") as err:
        tqa.load_truthfulqa(str(tmp_path))
    assert "\n" not in str(err.value)


def test_metrics_from_records():
    records = [
        {"benchmark": "truthfulqa_mc1", "logprobs": [-1.0, -2.0]},  # hit
        {"benchmark": "truthfulqa_mc1", "logprobs": [-3.0, -2.0]},  # miss
        {"benchmark": "truthfulqa_mc2", "logprobs": [LN(0.2), LN(0.2), LN(0.1)], "labels": [1, 0, 0]},  # 0.4
        {"benchmark": "truthfulqa_mc2", "logprobs": [-1.0, -1.0], "labels": [1, 0]},  # 0.5
    ]
    assert tqa.metrics_truthfulqa(records) == pytest.approx({"mc1": 0.5, "mc2": 0.45, "n": 2})


def test_evaluate_records(tiny_model):
    model, tok = tiny_model
    items = tqa.load_truthfulqa(str(FIXTURES / "mirror"))
    records = tqa.evaluate_truthfulqa(model, tok, items, "tiny", batch_size=4)
    assert [r["benchmark"] for r in records] == ["truthfulqa_mc1", "truthfulqa_mc2"] * 3
    first = records[0]
    assert set(first) >= {"benchmark", "item_id", "model", "prompt", "choices", "logprobs", "prediction", "correct"}
    assert first["model"] == "tiny" and first["choices"] == ["Blue.", "Green.", "Red."]
    # a choice shared by MC1 and MC2 gets the same log-prob in both records
    assert records[0]["logprobs"][0] == records[1]["logprobs"][0]
    m = tqa.metrics_truthfulqa(records)
    assert m["n"] == 3 and 0 <= m["mc2"] <= 1


def test_mirror_has_817_items(data_dir):
    items = tqa.load_truthfulqa(str(data_dir))
    assert len(items) == 817
    assert len({it["item_id"] for it in items}) == 817
    assert all(it["mc1_labels"][0] == 1 and sum(it["mc1_labels"]) == 1 for it in items)
