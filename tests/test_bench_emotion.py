"""hmxnb.bench.emotion: EmoBench EU/EA loaders (mirror and Hub), prompts, metrics."""

import json
from pathlib import Path

import pytest

from hmxnb.bench import emotion

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


def test_loaders_mirror_and_hub_agree(monkeypatch):
    import datasets

    mirror = emotion.load_emobench(str(FIXTURES / "mirror"))

    def load_dataset(path, name=None, split=None, data_files=None, **kwargs):
        assert path == "SahandSab/EmoBench"
        return [json.loads(line) for line in open(FIXTURES / "hub" / f"emobench_{data_files}", encoding="utf-8")]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    assert emotion.load_emobench(None) == mirror
    # English only: one EU scenario gives two questions, two EA scenarios one each
    assert [it["item_id"] for it in mirror] == ["emobench-eu-1-emotion", "emobench-eu-1-cause",
                                                "emobench-ea-1", "emobench-ea-2"]
    assert [it["label"] for it in mirror] == [0, 0, 1, 0]


@pytest.mark.parametrize(
    "index, expected_prompt",
    [
        (0, "Scenario: Ann won the race.\nQuestion: What emotion(s) would Ann ultimately feel in this situation?"
            "\nAnswer:"),  # EU emotion
        (1, "Scenario: Ann won the race.\nQuestion: Why would Ann feel Joy in this situation?\nAnswer:"),  # EU cause
        (2, "Scenario: Bo's friend is sad.\nQuestion: In this scenario, what is the most effective action for Bo?"
            "\nAnswer:"),  # EA action
    ],
)
def test_prompts(index, expected_prompt):
    assert emotion.load_emobench(str(FIXTURES / "mirror"))[index]["prompt"] == expected_prompt


def test_metrics():
    records = [
        {"task": "EU", "question_type": "emotion", "correct": True, "label": 0, "choices": ["a", "bbbb"],
         "logprobs": [-1.0, -2.0]},  # acc hit; normalised -1 vs -0.5 -> acc_norm miss
        {"task": "EU", "question_type": "cause", "correct": False, "label": 0, "choices": ["a", "b"],
         "logprobs": [-2.0, -1.0]},  # miss both ways
        {"task": "EA", "question_type": "action", "correct": True, "label": 1, "choices": ["a", "b"],
         "logprobs": [-2.0, -1.0]},  # hit both ways
    ]
    m = emotion.metrics_emobench(records)
    assert m["acc"] == pytest.approx(2 / 3)
    assert m["acc_norm"] == pytest.approx(1 / 3)
    assert m["acc/EU"] == 0.5 and m["acc/EA"] == 1.0 and m["acc/EU/cause"] == 0.0


def test_evaluate_records(tiny_model):
    model, tok = tiny_model
    records = emotion.evaluate_emobench(model, tok, emotion.load_emobench(str(FIXTURES / "mirror")), "tiny")
    assert [r["benchmark"] for r in records] == ["emobench_eu", "emobench_eu", "emobench_ea", "emobench_ea"]
    assert all(r["correct"] == (r["prediction"] == r["label"]) for r in records)


def test_mirror_sizes(data_dir):
    items = emotion.load_emobench(str(data_dir))
    assert sum(it["task"] == "EU" for it in items) == 400  # 200 English scenarios x 2 questions
    assert sum(it["task"] == "EA" for it in items) == 200
