"""tckr.core.io's atomic writers: a failed write leaves neither a temporary file nor a half-written result, and running
out of disk space is an error that names the file (not numpy's bare ``122880 requested and 77696 written``)."""

import errno
import pathlib

import numpy as np
import pandas as pd
import pytest

from tckr.core import io


def _half_then(exc):
    """A writer that puts half its bytes into the file and then fails like a full disk."""
    def write(self, text, *a, **k):
        with open(self, "w") as f:
            f.write(text[: len(text) // 2])
        raise exc
    return write


def test_enospc_names_the_file_and_leaves_the_old_result_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "results" / "mia.json"
    io.write_json(target, {"old": 1})
    monkeypatch.setattr(pathlib.Path, "write_text", _half_then(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(io.DiskFullError, match=r"mia\.json: not written, the disk is full") as e:
        io.write_json(target, {"new": list(range(1000))})
    assert str(target) in str(e.value) and e.value.errno == errno.ENOSPC
    assert isinstance(e.value, OSError)  # callers that catch OSError still do
    monkeypatch.undo()
    assert io.read_json(target) == {"old": 1}
    assert [p.name for p in target.parent.iterdir()] == ["mia.json"]


def test_numpy_short_write_is_a_disk_full_error_naming_the_array(tmp_path, monkeypatch):
    real_save = np.save

    def short_save(f, arr, allow_pickle=False):
        real_save(f, arr[: len(arr) // 2], allow_pickle=allow_pickle)
        raise OSError("122880 requested and 77696 written")  # numpy's message, no errno

    monkeypatch.setattr(np, "save", short_save)
    target = tmp_path / "scores.npy"
    with pytest.raises(io.DiskFullError) as e:
        io.save_array(target, np.arange(30000, dtype=np.float32))
    msg = str(e.value)
    assert str(target) in msg and "disk is full" in msg and "122880 requested and 77696 written" in msg
    assert list(tmp_path.iterdir()) == []


def test_csv_write_out_of_quota_is_disk_full_too(tmp_path, monkeypatch):
    def full(self, path, *a, **k):
        pathlib.Path(path).write_bytes(b"index,score\n0,")
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(io.DiskFullError, match="table.csv: not written, the disk is full"):
        io.save_csv(tmp_path / "table.csv", pd.DataFrame({"index": [0], "score": [1.0]}))
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_through_unchanged_and_leave_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.setattr(pathlib.Path, "write_text", _half_then(PermissionError(errno.EACCES, "Permission denied")))
    with pytest.raises(PermissionError) as e:
        io.write_text(tmp_path / "a.txt", "hello world")
    assert not isinstance(e.value, io.DiskFullError)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with pytest.raises(KeyError):
        with io.atomic_path(tmp_path / "b.txt") as tmp:
            tmp.write_text("half")
            raise KeyError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_a_disk_full_error_inside_a_nested_write_is_not_wrapped_twice(tmp_path):
    inner = tmp_path / "inner.txt"
    with pytest.raises(io.DiskFullError) as e:
        with io.atomic_path(tmp_path / "outer.txt"):
            raise io._disk_full(inner, OSError(errno.ENOSPC, "No space left on device"))
    assert str(e.value).count("disk is full") == 1 and str(inner) in str(e.value)
    assert list(tmp_path.iterdir()) == []
