"""hmxnb.embedded cache: a converted model is verified against the sizes and hashes recorded at conversion; a damaged
cache is rebuilt (conversion faked with the tiny model: the real one takes ~30 s)."""

import shutil

import pytest

from hmxnb import embedded


@pytest.fixture
def fake_cache(tmp_path, monkeypatch, tiny_model_dir):
    """HMXNB_CACHE in tmp_path and a conversion that copies the tiny model; returns the list of conversions made."""
    made = []

    def convert(folder):
        shutil.copytree(tiny_model_dir, folder)
        made.append(folder)

    monkeypatch.setenv("HMXNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded, "_convert_embedded", convert)
    return made


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: _truncate(d / "model.safetensors", 1000),          # truncated weights ("incomplete metadata")
        lambda d: (d / "tokenizer.json").unlink(),                    # a file gone
        lambda d: (d / "model.safetensors").write_bytes(              # same size, flipped bytes: only the hash sees it
            (d / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\1"),
        lambda d: (d / embedded.MANIFEST).write_bytes(b""),          # an empty manifest (a crash, a full disk)
        lambda d: _truncate(d / embedded.MANIFEST, 20),               # a manifest cut short: not JSON
        lambda d: (d / embedded.MANIFEST).write_bytes(b"\xff\xfe{}"),  # not UTF-8
        lambda d: (d / embedded.MANIFEST).write_text("[1, 2]"),       # JSON, but not a map of file -> size, sha256
        lambda d: (d / embedded.MANIFEST).write_text('{"model.safetensors": {"size": 1}}'),  # an entry without hash
    ],
)
def test_damaged_cache_is_detected_and_rebuilt(fake_cache, damage, capsys):
    first = embedded.embedded_model_dir()
    assert embedded.cache_problem(first) == "" and len(fake_cache) == 1
    assert embedded.embedded_model_dir() == first and len(fake_cache) == 1  # intact: reused, not rebuilt
    damage(first)
    assert embedded.cache_problem(first)
    again = embedded.embedded_model_dir()
    assert len(fake_cache) == 2 and embedded.cache_problem(again) == ""
    assert str(first) in capsys.readouterr().err  # says which folder it rebuilt


def test_cache_without_manifest_is_checked_by_structure(fake_cache):
    d = embedded.embedded_model_dir()
    (d / embedded.MANIFEST).unlink()  # a cache converted before manifests existed
    _truncate(d / "model.safetensors", (d / "model.safetensors").stat().st_size - 10)
    assert "header needs" in embedded.cache_problem(d)
