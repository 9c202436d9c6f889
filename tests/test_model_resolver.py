"""One resolver for MODEL (judge_core.embedded.resolve_model): `tiny` means the embedded judge in the library,
every command and the bench; a revision with it is an error; the offline error tells how to pick a revision."""

import json

import pytest

from judge_core.checkpoint import CheckpointError, resolve
from judge_core.cli.main import main
from judge_core.embedded import default_checkpoint, resolve_model


def test_judge_from_pretrained_tiny_is_the_embedded_judge_offline(monkeypatch, tmp_path):
    from judge_core.api import Judge

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))  # nothing there: no hub involved
    judge = Judge.from_pretrained("tiny", device="cpu", backend="hf")
    assert judge.path == default_checkpoint()
    assert judge.compare("Rate.", "one", "two").ok


def test_every_surface_resolves_tiny_alike():
    from bench.models import resolve_model as bench_resolve
    from judge_core.cli.model_arg import resolve_model as cli_resolve
    from judge_core.gptq.quantize import resolve_source

    embedded = default_checkpoint()
    assert resolve_model("tiny") == embedded
    assert resolve_source("tiny") == embedded
    assert cli_resolve("tiny") == str(embedded)
    assert bench_resolve("tiny", "/nonexistent-work-dir")[0] == str(embedded)


def test_revision_with_tiny_is_an_error_everywhere(tmp_path, capsys):
    from judge_core.api import Judge

    with pytest.raises(CheckpointError, match=r"revision 'v2' was given for 'tiny'.*revision="):
        Judge.from_pretrained("tiny", revision="v2")
    with pytest.raises(CheckpointError, match="no revisions"):
        resolve_model("tiny", revision="main")

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": 1, "instruction": "x", "response_1": "a", "response_2": "b"}) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"precious\n")
    assert main(["score", "tiny", str(inp), "-o", str(out), "--overwrite", "--revision", "v2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --revision 'v2': `tiny` is the embedded judge") and err.count("\n") == 1
    assert out.read_bytes() == b"precious\n"  # refused before the model loaded
    assert main(["rank", "tiny", str(inp), "-o", str(tmp_path / "r"), "--revision", "v2"]) == 2
    assert "--revision 'v2'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["quantize", "tiny", str(tmp_path / "q"), "--revision", "v2", "--method", "rtn"])
    assert stop.value.code == 2 and "no revisions" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_offline_error_names_the_revision_and_what_the_cache_holds(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError) as e:
        resolve("org/judge", revision="v2", cache_dir=tmp_path)
    message = str(e.value)
    print(message)
    assert "`hf download org/judge --revision v2`" in message
    assert "--revision" in message and "revision=" in message

    # the cache holds the repo at another revision: the error names it
    repo = tmp_path / "models--org--judge"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "v1").write_text(commit)
    with pytest.raises(CheckpointError) as e:
        resolve("org/judge", revision="v2", cache_dir=tmp_path)
    message = str(e.value)
    print(message)
    assert "the cache holds org/judge at: v1, 0123456789ab" in message and "--revision" in message
    assert resolve("org/judge", revision="v1", cache_dir=tmp_path) == repo / "snapshots" / commit
