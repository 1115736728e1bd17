"""core.io: deterministic safetensors files, checksummed artefacts (weights, adapters), disk-full errors on weight writes."""

from __future__ import annotations

import errno
import hashlib

import pytest
import torch

from tckr.core import io
from tckr.runfolder import artifacts

MOD = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"unet.{MOD}.lora_A.weight": torch.randn(4, 32, generator=g),
            f"unet.{MOD}.lora_B.weight": torch.randn(32, 4, generator=g),
            "half": torch.randn(3, 5, generator=g).half()}


def _metadata(n: int = 12) -> dict:
    return {f"key{i:02d}": {"value": i, "list": list(range(i))} for i in range(n)} | {"text": "é, \"quoted\"\n"}


def test_saving_the_same_weights_twice_gives_the_same_bytes(tmp_path):
    """safetensors writes its metadata in hash-map order (a fresh order per save): with a dozen keys two saves
    essentially never agree unless the header is rewritten in sorted order."""
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    io.save_weights(a, _tensors(), _metadata())
    io.save_weights(b, _tensors(), _metadata())
    io.save_weights(c, _tensors(), dict(reversed(list(_metadata().items()))))  # same content, keys given in another order
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    tensors, meta = io.load_weights(a)
    assert meta == _metadata()
    assert all(torch.equal(tensors[k], v) for k, v in _tensors().items()) and tensors.keys() == _tensors().keys()
    header_len = int.from_bytes(a.read_bytes()[:8], "little")
    assert header_len % 8 == 0  # the tensor data stays 8-byte aligned, as safetensors writes it
    other = tmp_path / "d.safetensors"
    io.save_weights(other, _tensors(), {**_metadata(), "key00": "changed"})
    assert hashlib.sha256(other.read_bytes()).digest() != hashlib.sha256(a.read_bytes()).digest()


def test_the_header_is_what_safetensors_reads(tmp_path):
    from safetensors import safe_open

    path = tmp_path / "w.safetensors"
    io.save_weights(path, _tensors(), {"b": 1, "a": "x"})
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"a": "x", "b": "1"}
        assert sorted(f.keys()) == sorted(_tensors())
        assert torch.equal(f.get_tensor("half"), _tensors()["half"])
    io.save_weights(path, _tensors())  # no metadata at all
    assert io.load_weights(path)[1] == {}


def test_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("old\n")
    with pytest.raises(io.DiskFullError, match=rf"{path}: not written, the disk is full") as err, io.atomic_path(path) as tmp:
        tmp.write_text("half of it")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert err.value.errno == errno.ENOSPC and "and rerun" in str(err.value)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary file left behind
    with pytest.raises(OSError, match="Permission") as other, io.atomic_path(path):  # other errors pass through as they are
        raise PermissionError(errno.EACCES, "Permission denied")
    assert not isinstance(other.value, io.DiskFullError)


def test_adapter_without_its_recorded_sha256_is_a_problem(tmp_path):
    from tckr.generation import lora
    from tckr.runfolder import runs

    run = runs.open_run("configs/tiny.yaml", tmp_path / "run")
    adapter = artifacts.adapter_path(run)
    record = adapter.parent / "training.json"
    io.save_weights(adapter, {k: v for k, v in _tensors().items() if k.startswith("unet.")}, {"rank": 4})
    assert str(adapter) in lora.adapter_problem(run) and "training.json" in lora.adapter_problem(run)
    io.write_json(record, {"steps": 4})
    assert "records no adapter_sha256" in lora.adapter_problem(run)
    io.write_json(record, {"steps": 4, "adapter_sha256": io.sha256_file(adapter)})
    assert lora.adapter_problem(run) is None
    io.save_weights(adapter, {k: v * 2 for k, v in _tensors().items() if k.startswith("unet.")}, {"rank": 4})  # altered
    assert "sha256 differs" in lora.adapter_problem(run)
    record.write_text("{not json")
    assert str(record) in lora.adapter_problem(run)
