"""hmxnb.artifacts: provenance next to every artefact, JSON without NaN."""

import json
import math

import numpy as np
import pytest

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


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    """write() on a full disk raises OSError(ENOSPC) with no file name: the error gets the artefact's path; the file
    written before stays whole and no temporary file is left."""
    import errno
    from pathlib import Path

    from hmxnb import artifacts

    target = save_json({"old": 1}, tmp_path / "run.json")

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", full)
        with pytest.raises(OSError) as err:
            save_json({"new": 2}, target)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert json.loads(target.read_text()) == {"old": 1} and [p.name for p in tmp_path.iterdir()] == ["run.json"]

    class FullFile:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        write = full

    monkeypatch.setattr(artifacts, "open", lambda *a, **kw: FullFile(), raising=False)
    with pytest.raises(OSError) as err:
        artifacts.append_jsonl([{"x": 1}], tmp_path / "history.jsonl")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "history.jsonl")


def test_provenance_names_the_data_files_the_step_read(tmp_path, monkeypatch):
    """A step's provenance.json holds the sha256 of each data file it reads (hmxnb.steps declares which; the step
    is the folder's name), so an edited prompts file shows in the record, also for a notebook run by hand."""
    import hashlib

    from hmxnb.data import PACKAGE_DATA

    monkeypatch.delenv("HMXNB_DATA_DIR", raising=False)  # no mirror
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text((PACKAGE_DATA / "prompts.jsonl").read_text())
    p = load_params("smoke", {"prompts_file": str(prompts)})
    rubric = json.loads(write_provenance(tmp_path / "01_design_rubric", p).read_text())["data"]
    assert set(rubric) == {"rubric_examples", "judge_validation", "prompts"}
    assert rubric["prompts"] == hashlib.sha256(prompts.read_bytes()).hexdigest()
    validation = PACKAGE_DATA / "judge_validation.jsonl"
    assert rubric["judge_validation"] == hashlib.sha256(validation.read_bytes()).hexdigest()
    bench = json.loads(write_provenance(tmp_path / "04_benchmarks", p).read_text())["data"]
    assert bench["benchmarks"].startswith("Hugging Face Hub")  # no mirror: nothing local to hash
    prompts.write_text(prompts.read_text() + '{"id": "x", "split": "train", "prompt": "More?"}\n')
    again = json.loads(write_provenance(tmp_path / "02_train_human", p).read_text())["data"]
    assert again == {"prompts": hashlib.sha256(prompts.read_bytes()).hexdigest()} != {"prompts": rubric["prompts"]}
    assert "data" not in json.loads(write_provenance(tmp_path / "05_compare_report", p).read_text())
