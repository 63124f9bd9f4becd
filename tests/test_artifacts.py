"""hmxnb.artifacts: provenance next to every artefact, JSON without NaN."""

import json
import math

import numpy as np

from hmxnb.artifacts import package_versions, save_json, save_jsonl, write_provenance
from hmxnb.params import load_params, params_hash


def test_provenance_has_params_versions_commit(tmp_path):
    p = load_params("smoke")
    f = write_provenance(tmp_path, p, judge_prompt_version="judge-v1")
    data = json.loads(f.read_text())
    assert data["params"]["max_steps"] == p["max_steps"]
    assert data["params_hash"] == params_hash(p)
    assert data["versions"]["torch"] and data["versions"]["trl"] == "1.14.2"
    assert "git_commit" in data and data["judge_prompt_version"] == "judge-v1"


def test_nan_and_numpy_are_written_as_json(tmp_path):
    f = save_json({"a": float("nan"), "b": np.float32(1.5), "c": np.array([1, 2])}, tmp_path / "m.json")
    assert json.loads(f.read_text()) == {"a": None, "b": 1.5, "c": [1, 2]}
    g = save_jsonl([{"x": math.inf}, {"x": np.int64(3)}], tmp_path / "s.jsonl")
    assert [json.loads(line) for line in g.read_text().splitlines()] == [{"x": None}, {"x": 3}]
    assert not list(tmp_path.glob("*.tmp"))


def test_versions_report_missing_packages_as_none(monkeypatch):
    from importlib import metadata

    from hmxnb import artifacts

    monkeypatch.setattr(artifacts, "PACKAGES", ("torch", "hmxnb-no-such-package"))
    v = package_versions()
    assert v["hmxnb-no-such-package"] is None  # not installed: None, not an exception or a made-up version
    assert v["torch"] == metadata.version("torch") and v["python"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    # two writers of one artefact (e.g. provenance.json) raced on one "<name>.tmp" and one crashed
    from concurrent.futures import ThreadPoolExecutor

    target = tmp_path / "provenance.json"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: save_json({"writer": i, "pad": "x" * 200_000}, target), range(40)))
    assert json.loads(target.read_text())["writer"] in range(40)
    assert [p.name for p in tmp_path.iterdir()] == ["provenance.json"]  # no temporary file left behind
