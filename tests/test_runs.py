import json

import numpy as np
import pytest

from tckr.core.config import ConfigError, load_config
from tckr.runfolder import runs


def test_run_folder_records_everything(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    for f in ("config.yaml", "environment.json", "seeds.json"):
        assert (run.dir / f).is_file()
    env = json.loads((run.dir / "environment.json").read_text())
    assert env["packages"]["torch"] and "commit" in env["git"]
    s = run.splits()
    assert len(s.D) == run.cfg.data.train_size == len(s.H)
    assert not set(s.D) & set(s.H) and not set(s.D) & set(s.val)
    D = run.real("D")
    assert D.images.shape == (len(s.D), 32, 32, 3) and D.split == "D"
    assert len(run.real("test")) == run.cfg.data.test_size
    again = runs.open_run(None, run.dir)
    assert again.cfg.hash() == run.cfg.hash()
    assert np.array_equal(again.splits().D, s.D)


def test_reopening_with_other_settings_fails(tmp_path):
    runs.open_run("configs/tiny.yaml", tmp_path / "r")
    with pytest.raises(ConfigError, match="train.epochs: 2 -> 9"):
        runs.open_run("configs/tiny.yaml", tmp_path / "r", overrides={"train.epochs": 9})
    with pytest.raises(ValueError, match="no config given"):
        runs.open_run(None, tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown real split"):
        runs.open_run(None, tmp_path / "r").real("train")


def test_atomic_writes_leave_no_temp_files_and_normal_permissions(tmp_path):
    import os

    from tckr.core import io

    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    io.write_json(target, {"a": 1})
    assert list(tmp_path.iterdir()) == [target]
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~io._umask()


def test_reopening_a_run_reads_it_without_rewriting_seeds(tmp_path):
    import os

    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    seeds = run.dir / "seeds.json"
    os.utime(seeds, ns=(1_000_000_000, 1_000_000_000))
    again = runs.open_run(None, run.dir)
    assert seeds.stat().st_mtime_ns == 1_000_000_000 and again.seed == run.seed
    other = runs.open_run(None, tmp_path / "r", seed=run.seed)
    assert other.seed_for(5) == run.seed_for(5) and seeds.stat().st_mtime_ns == 1_000_000_000


@pytest.mark.parametrize("want, gpus, says", [
    ("cuda:0", 0, r"study.device is 'cuda:0' but this machine has no CUDA GPU; use 'auto' \(CUDA when available\) or 'cpu'$"),
    ("cuda", 0, "study.device is 'cuda' but this machine has no CUDA GPU"),
    ("cuda:1", 1, r"study.device is 'cuda:1' but this machine has 1 CUDA GPU\(s\) \(cuda:0..cuda:0\)"),
])
def test_a_device_the_machine_lacks_fails_before_the_run_folder_is_made(tmp_path, monkeypatch, want, gpus, says):
    import torch

    from tckr.runfolder import environment

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    with pytest.raises(ConfigError, match=says):
        runs.open_run("configs/tiny.yaml", tmp_path / "r", overrides={"study.device": want})
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match=says):  # the phases' own device lookup says the same
        environment.device(load_config("configs/tiny.yaml", {"study.device": want}))

    # a run made on a machine that had the GPU still opens here to be read (its figures and reports on a laptop)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "a GPU")  # environment.json records it
    made = runs.open_run("configs/tiny.yaml", tmp_path / "r", overrides={"study.device": want})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert runs.open_run(None, made.dir).cfg.study.device == want


def test_offline_a_dataset_absent_everywhere_fails_at_once_without_a_run_folder(tmp_path, monkeypatch):
    import time

    from tckr.datasets import real

    def asked(*a, **k):
        raise AssertionError("the hub was asked although offline mode is on")

    monkeypatch.setattr(real, "_load_from_hub", asked)
    monkeypatch.setenv("TCKR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    start = time.perf_counter()
    with pytest.raises(real.DatasetUnavailableError, match=r"'cifar10' \(train\) is not reachable.*offline mode is on "
                                                           r"\(HF_HUB_OFFLINE=1\) and 'uoft-cs/cifar10' is not in its caches"):
        runs.open_run("configs/tiny.yaml", tmp_path / "r", overrides={"study.dataset": "cifar10"})
    assert time.perf_counter() - start < 1.0 and not (tmp_path / "r").exists()
    with pytest.raises(real.DatasetUnavailableError, match=str(tmp_path / "data" / "cifar10")):
        real.load_real("cifar10", "train")

    # what datasets could read offline is still tried: a folder in its cache, or offline mode switched off
    (tmp_path / "hf" / "datasets" / "uoft-cs___cifar10").mkdir(parents=True)
    with pytest.raises(AssertionError, match="the hub was asked"):
        real.load_real("cifar10", "train")
    (tmp_path / "hf" / "datasets" / "uoft-cs___cifar10").rmdir()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")  # datasets' own variable wins over HF_HUB_OFFLINE
    with pytest.raises(AssertionError, match="the hub was asked"):
        real.load_real("cifar10", "train")
    real.check_available("cifar10")  # online, opening a run does not download anything to check


def test_environment_records_the_cpu_its_instruction_sets_and_the_math_libraries(tmp_path):
    from tckr.runfolder import environment

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
                   "flags\t\t: fpu sse2 avx2 fma avx512f\nvmx flags\t: ept\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert environment.cpu(x86) == {"model": "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz",
                                    "flags": ["fpu", "sse2", "avx2", "fma", "avx512f"]}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16\nCPU implementer\t: 0x41\n")
    assert environment.cpu(arm)["flags"] == ["fp", "asimd", "sve", "bf16"]
    elsewhere = environment.cpu(tmp_path / "none")  # no /proc/cpuinfo (macOS, Windows): platform.processor()
    assert elsewhere["flags"] is None and elsewhere["model"]
    shown = ("PyTorch built with:\n  - GCC 13.3\n  - Intel(R) oneAPI Math Kernel Library Version 2024.2\n"
             "  - CPU capability usage: AVX2\n  - Build settings: BLAS_INFO=mkl, CXX_FLAGS= -O2 -fPIC, LAPACK_INFO=mkl, "
             "TORCH_VERSION=2.14.1, USE_CUDA=0, \n")
    assert environment.torch_build(shown) == ["GCC 13.3", "Intel(R) oneAPI Math Kernel Library Version 2024.2",
                                              "CPU capability usage: AVX2", "BLAS_INFO=mkl", "LAPACK_INFO=mkl",
                                              "TORCH_VERSION=2.14.1"]
    run = runs.open_run("configs/tiny.yaml", tmp_path / "r")
    env = json.loads((run.dir / "environment.json").read_text())
    assert env["cpu"]["model"] and env["cpu"] == environment.cpu()
    if env["cpu"]["flags"] is not None:  # Linux
        assert {"sse2", "fp", "asimd"} & set(env["cpu"]["flags"])
    math = env["math_libraries"]
    assert any(line.startswith("BLAS_INFO=") for line in math["torch"]) and math["torch_cpu_capability"]
    blas = [p for p in math["threadpools"] if p["user_api"] == "blas"]  # numpy's BLAS at least
    assert blas and all(p["internal_api"] and "version" in p for p in blas)
