"""hmxnb.data: the packaged prompt and example sets."""

import pytest

from hmxnb.data import load_prompts, load_rubric_examples, read_jsonl, to_chat_dataset


def test_prompt_set_has_both_kinds_and_splits():
    rows = load_prompts()
    assert {r["kind"] for r in rows} == {"invites_expression", "neutral_task"}
    held = load_prompts(split="heldout")
    train = load_prompts(split="train")
    assert len(held) + len(train) == len(rows) and len(held) >= 10
    assert not {r["id"] for r in held} & {r["id"] for r in train}
    assert len({r["id"] for r in rows}) == len(rows)
    assert len(load_prompts(limit=5)) == 5


def test_examples_cover_three_tiers():
    ex = load_rubric_examples()
    assert {e["tier"] for e in ex} == {0, 1, 2}
    assert all(sum(e["prompt"] == p and e["tier"] == t for e in ex) == 1
               for p in {e["prompt"] for e in ex} for t in (0, 1, 2))


def test_bad_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "ok", "id": "a"}\n{broken\n')
    with pytest.raises(ValueError, match=r"p.jsonl:2"):
        read_jsonl(f)
    f.write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match="no 'prompt'"):
        load_prompts(f)


def test_chat_dataset_is_conversational():
    ds = to_chat_dataset(load_prompts(limit=3))
    assert ds[0]["prompt"][0]["role"] == "user" and isinstance(ds[0]["prompt"][0]["content"], str)
    assert "prompt_id" in ds.column_names


def test_judge_validation_set_is_separate_and_balanced():
    from hmxnb.data import load_judge_validation, load_rubric_examples
    from hmxnb.judge import FEW_SHOT

    rows = load_judge_validation()
    assert len(rows) == 72 and len({r["id"] for r in rows}) == 72
    by_prompt = {}
    for r in rows:
        by_prompt.setdefault(r["prompt"], []).append(r["tier"])
    assert len(by_prompt) == 24 and all(sorted(t) == [0, 1, 2] for t in by_prompt.values())
    others = ({r["prompt"] for r in load_prompts()} | {r["prompt"] for r in load_rubric_examples()}
              | {e["prompt"] for e in FEW_SHOT})
    assert not others & set(by_prompt)  # prompts the judge and the training never saw
    anchors = {e["reply"] for e in FEW_SHOT} | {r["reply"] for r in load_rubric_examples()}
    assert not anchors & {r["reply"] for r in rows}


def test_heldout_split_has_power():
    held = load_prompts(split="heldout")
    assert len(held) >= 48 and len(load_prompts(split="train")) == 64
    assert not {r["prompt"] for r in held} & {r["prompt"] for r in load_prompts(split="train")}


@pytest.mark.parametrize("rows, has", [
    ([{"id": "a", "split": "heldout", "prompt": "How are you?"}, {"id": "b", "split": "eval", "prompt": "Hi?"}],
     "its splits: eval, heldout"),
    ([], "it has no rows"),
])
def test_a_prompts_file_without_the_split_names_file_and_splits(tmp_path, rows, has):
    """Issue 32: a prompts file with no training rows gave a bare IndexError in notebook 02."""
    import json

    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError) as err:
        load_prompts(path, split="train")
    assert str(err.value) == f"prompts file {path} has no rows in split 'train' ({has})"
    assert len(load_prompts(path)) == len(rows)  # no split asked: every row, none is fine
