import numpy as np
import pytest

from tckr.core import registry
from tckr.datasets import real, splitting

PAPER = ["cifar10", "cifar100", "oxford_pets", "tiny_imagenet", "stanford_cars", "food101", "stl10",
         "imagenette", "imagewoof", "caltech101"]
N_CLASSES = {"cifar10": 10, "cifar100": 100, "oxford_pets": 37, "tiny_imagenet": 200, "stanford_cars": 196,
             "food101": 101, "stl10": 10, "imagenette": 10, "imagewoof": 10, "fashion_mnist": 10,
             "bloodmnist": 8, "dermamnist": 7}


def test_registry_has_paper_datasets_and_extras():
    names = registry.available_datasets()
    for n in PAPER + ["bloodmnist", "dermamnist", "fashion_mnist"]:
        assert n in names
    for n, k in N_CLASSES.items():
        s = registry.spec(n)
        assert s.num_classes == k, n
        assert len(set(s.class_names)) == k, f"{n}: duplicate class names"
        assert s.hf_id and s.image_column and s.label_column
    assert registry.spec("caltech101").num_classes in (101, 102)


def test_known_label_fixes():
    assert "crab" in registry.class_names("cifar100") and "cra" not in registry.class_names("cifar100")
    assert registry.class_names("cifar10")[:3] == ["airplane", "automobile", "bird"]
    assert registry.class_names("imagenette") != sorted(registry.class_names("imagenette"))


def test_unknown_dataset_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*fashion_mnist"):
        real.load_real("nope", "train")
    with pytest.raises(ValueError, match="unknown split"):
        real.load_real("fashion_mnist", "dev")


def test_fashion_mnist_offline():
    ds = real.load_real("fashion_mnist", "train")
    assert ds.images.shape == (60000, 28, 28, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and len(ds.labels) == 60000
    assert ds.class_names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                              "Bag", "Ankle boot"]
    assert np.array_equal(np.bincount(ds.labels), np.full(10, 6000))
    assert (ds.images[..., 0] == ds.images[..., 2]).all()
    test = real.load_real("fashion_mnist", "test", size=32)
    assert test.images.shape == (10000, 32, 32, 3)


def _save_fake_hf(tmp_path, monkeypatch, name="cifar10", n=24, size=(12, 10), mode="RGB"):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    s = registry.spec(name)
    rng = np.random.default_rng(0)
    split = {}
    for hf_split in (s.train_split, s.test_split):
        imgs = [Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).convert(mode) for _ in range(n)]
        labels = [i % s.num_classes for i in range(n)]
        split[hf_split] = datasets.Dataset.from_dict({s.image_column: imgs, s.label_column: labels},
                                                     features=datasets.Features({s.image_column: datasets.Image(),
                                                                                 s.label_column: datasets.ClassLabel(names=list(s.class_names))}))
    datasets.DatasetDict(split).save_to_disk(str(tmp_path / name))
    monkeypatch.setenv("TCKR_DATA_DIR", str(tmp_path))


def test_hugging_face_path_from_disk(tmp_path, monkeypatch):
    _save_fake_hf(tmp_path, monkeypatch, "cifar10", mode="L")
    ds = real.load_real("cifar10", "train", size=8)
    assert ds.images.shape == (24, 8, 8, 3) and ds.images.dtype == np.uint8
    assert list(ds.labels[:3]) == [0, 1, 2]
    assert ds.class_names == registry.class_names("cifar10")
    assert real.load_real("cifar10", "test", size=8).images.shape == (24, 8, 8, 3)


def test_unreachable_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TCKR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(real.DatasetUnavailableError) as e:
        real.load_real("stl10", "train")
    msg = str(e.value)
    assert "stl10" in msg and str(tmp_path / "stl10") in msg and "tanganke/stl10" in msg and "save_to_disk" in msg


def test_splits_are_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), 100)
    s = splitting.make_splits(labels, 200, 100, seed=3)
    assert len(s.D) == len(s.H) == 200 and len(s.val) == 100 and len(s.pool) == 500
    allix = np.concatenate([s.D, s.H, s.val, s.pool])
    assert len(np.unique(allix)) == len(labels) == len(allix)
    assert (np.bincount(labels[s.D]) == 20).all() and (np.bincount(labels[s.H]) == 20).all()
    again = splitting.make_splits(labels, 200, 100, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(s.as_dict().values(), again.as_dict().values()))
    other = splitting.make_splits(labels, 200, 100, seed=4)
    assert not np.array_equal(s.D, other.D)
    with pytest.raises(ValueError, match="need 1100 examples"):
        splitting.make_splits(labels, 500, 100, seed=0)


def test_channel_stats_and_rgb():
    imgs = np.zeros((4, 2, 2), dtype=np.uint8)
    imgs[:, 0, 0] = 255
    st = real.compute_channel_stats(real.to_rgb(imgs))
    assert st["mean"] == pytest.approx([0.25] * 3) and st["std"] == pytest.approx([np.sqrt(0.25 - 0.0625)] * 3, rel=1e-5)
    with pytest.raises(ValueError, match="expected N×H×W"):
        real.to_rgb(np.zeros((2, 3, 3, 4), dtype=np.uint8))


def test_label_columns_as_names_or_lists():
    s = registry.spec("dermamnist")
    assert list(real._label_ids([[4], [0]], s)) == [4, 0]
    p = registry.spec("oxford_pets")
    name = p.class_names[5]
    assert list(real._label_ids([name, name.upper()], p)) == [5, 5]
    with pytest.raises(ValueError, match="not in the registry"):
        real._label_ids(["not a breed"], p)


# ---------------------------------------------------------------- resized-image cache
DECODE = real._read_fashion_mnist_idx


def _counting_decoder(monkeypatch, log):
    """Wrap the Fashion-MNIST decoder so each call appends a line to ``log`` (a file: forked builders share it)."""
    original = real._read_fashion_mnist_idx

    def decode(folder, split):
        with open(log, "a") as f:
            f.write("decode\n")
        return original(folder, split)

    monkeypatch.setattr(real, "_read_fashion_mnist_idx", decode)
    return lambda: len(open(log).read().split()) if log.exists() else 0


def _fresh(split, size):
    """The split decoded from the Debian files and resized, without any cache."""
    x, y = DECODE(real.paths.FASHION_MNIST_DEBIAN, split)
    return real.to_rgb(real.resize_images(x, size)), y.astype(np.int64)


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(real.paths, "CACHE", tmp_path / "cache")
    decodes = _counting_decoder(monkeypatch, tmp_path / "log")
    first = real.load_real("fashion_mnist", "test", size=8)
    second = real.load_real("fashion_mnist", "test", size=8)
    assert decodes() == 1  # the second load decoded nothing
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    x, y = _fresh("test", 8)
    assert np.array_equal(second.images, x) and np.array_equal(second.labels, y) and np.array_equal(first.images, x)
    assert len(list(real.real_cache_dir().glob("fashion_mnist_test_8_*.images.npy"))) == 1
    real.load_real("fashion_mnist", "test", size=10)  # another size is another entry
    assert decodes() == 2


def test_changed_source_invalidates_the_cache(tmp_path, monkeypatch):
    import os
    import shutil

    src = tmp_path / "fm"
    src.mkdir()
    for f in real.paths.FASHION_MNIST_DEBIAN.glob("*.gz"):
        if f.name.startswith("t10k") or f.name.startswith("train-images"):  # train-images marks the folder as present
            os.symlink(f, src / f.name) if f.name.startswith("train") else shutil.copy(f, src / f.name)
    monkeypatch.setattr(real.paths, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(real.paths, "FASHION_MNIST_DEBIAN", src)
    decodes = _counting_decoder(monkeypatch, tmp_path / "log")
    real.load_real("fashion_mnist", "test", size=8)
    os.utime(src / "t10k-labels-idx1-ubyte.gz", ns=(1, 1))  # the source changed (its time): a new key
    real.load_real("fashion_mnist", "test", size=8)
    assert decodes() == 2
    assert len(list(real.real_cache_dir().glob("fashion_mnist_test_8_*.images.npy"))) == 1  # the stale entry removed


def _build_in_child(out):
    ds = real.load_real("fashion_mnist", "test")  # native size: a forked child must not use torch (OpenMP hangs)
    np.save(out, np.asarray(ds.images))


def test_two_concurrent_builders_end_with_one_valid_cache(tmp_path, monkeypatch):
    import multiprocessing as mp

    monkeypatch.setattr(real.paths, "CACHE", tmp_path / "cache")
    decodes = _counting_decoder(monkeypatch, tmp_path / "log")
    ctx = mp.get_context("fork")  # children inherit the patched cache folder and decoder
    procs = [ctx.Process(target=_build_in_child, args=(tmp_path / f"out{i}.npy",)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    assert decodes() == 1  # one built under the lock, the other read what it built
    x = real.to_rgb(DECODE(real.paths.FASHION_MNIST_DEBIAN, "test")[0])
    assert all(np.array_equal(np.load(tmp_path / f"out{i}.npy"), x) for i in range(2))
    entries = sorted(p.name for p in real.real_cache_dir().iterdir() if not p.name.endswith(".lock"))
    assert len(entries) == 3 and not [n for n in entries if n.startswith(".")]  # images, labels, record; no temp files
    assert np.array_equal(real.load_real("fashion_mnist", "test").images, x) and decodes() == 1


def test_partial_cache_is_rebuilt_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(real.paths, "CACHE", tmp_path / "cache")
    decodes = _counting_decoder(monkeypatch, tmp_path / "log")
    real.load_real("fashion_mnist", "test", size=8)
    (img,) = real.real_cache_dir().glob("fashion_mnist_test_8_*.images.npy")
    img.write_bytes(img.read_bytes()[: img.stat().st_size // 2])  # a partial write
    again = real.load_real("fashion_mnist", "test", size=8)
    assert "damaged or partial" in capsys.readouterr().out and decodes() == 2
    assert np.array_equal(again.images, _fresh("test", 8)[0])
    (rec,) = real.real_cache_dir().glob("fashion_mnist_test_8_*.json")
    rec.write_text("{ not json")
    real.load_real("fashion_mnist", "test", size=8)
    assert "rebuilding" in capsys.readouterr().out and decodes() == 3
    real.load_real("fashion_mnist", "test", size=8)
    assert decodes() == 3
