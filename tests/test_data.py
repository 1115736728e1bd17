import numpy as np
import pytest

from tckr import data

PAPER = ["cifar10", "cifar100", "oxford_pets", "tiny_imagenet", "stanford_cars", "food101", "stl10",
         "imagenette", "imagewoof", "caltech101"]
N_CLASSES = {"cifar10": 10, "cifar100": 100, "oxford_pets": 37, "tiny_imagenet": 200, "stanford_cars": 196,
             "food101": 101, "stl10": 10, "imagenette": 10, "imagewoof": 10, "fashion_mnist": 10,
             "bloodmnist": 8, "dermamnist": 7}


def test_registry_has_paper_datasets_and_extras():
    names = data.available_datasets()
    for n in PAPER + ["bloodmnist", "dermamnist", "fashion_mnist"]:
        assert n in names
    for n, k in N_CLASSES.items():
        s = data.spec(n)
        assert s.num_classes == k, n
        assert len(set(s.class_names)) == k, f"{n}: duplicate class names"
        assert s.hf_id and s.image_column and s.label_column
    assert data.spec("caltech101").num_classes in (101, 102)


def test_known_label_fixes():
    assert "crab" in data.class_names("cifar100") and "cra" not in data.class_names("cifar100")
    assert data.class_names("cifar10")[:3] == ["airplane", "automobile", "bird"]
    assert data.class_names("imagenette") != sorted(data.class_names("imagenette"))


def test_unknown_dataset_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*fashion_mnist"):
        data.load_real("nope", "train")
    with pytest.raises(ValueError, match="unknown split"):
        data.load_real("fashion_mnist", "dev")


def test_fashion_mnist_offline():
    ds = data.load_real("fashion_mnist", "train")
    assert ds.images.shape == (60000, 28, 28, 3) and ds.images.dtype == np.uint8
    assert ds.labels.dtype == np.int64 and len(ds.labels) == 60000
    assert ds.class_names == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                              "Bag", "Ankle boot"]
    assert np.array_equal(np.bincount(ds.labels), np.full(10, 6000))
    assert (ds.images[..., 0] == ds.images[..., 2]).all()
    test = data.load_real("fashion_mnist", "test", size=32)
    assert test.images.shape == (10000, 32, 32, 3)


def _save_fake_hf(tmp_path, monkeypatch, name="cifar10", n=24, size=(12, 10), mode="RGB"):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    s = data.spec(name)
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
    ds = data.load_real("cifar10", "train", size=8)
    assert ds.images.shape == (24, 8, 8, 3) and ds.images.dtype == np.uint8
    assert list(ds.labels[:3]) == [0, 1, 2]
    assert ds.class_names == data.class_names("cifar10")
    assert data.load_real("cifar10", "test", size=8).images.shape == (24, 8, 8, 3)


def test_unreachable_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TCKR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(data.DatasetUnavailableError) as e:
        data.load_real("stl10", "train")
    msg = str(e.value)
    assert "stl10" in msg and str(tmp_path / "stl10") in msg and "tanganke/stl10" in msg and "save_to_disk" in msg


def test_splits_are_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), 100)
    s = data.make_splits(labels, 200, 100, seed=3)
    assert len(s.D) == len(s.H) == 200 and len(s.val) == 100 and len(s.pool) == 500
    allix = np.concatenate([s.D, s.H, s.val, s.pool])
    assert len(np.unique(allix)) == len(labels) == len(allix)
    assert (np.bincount(labels[s.D]) == 20).all() and (np.bincount(labels[s.H]) == 20).all()
    again = data.make_splits(labels, 200, 100, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(s.as_dict().values(), again.as_dict().values()))
    other = data.make_splits(labels, 200, 100, seed=4)
    assert not np.array_equal(s.D, other.D)
    with pytest.raises(ValueError, match="need 1100 examples"):
        data.make_splits(labels, 500, 100, seed=0)


def test_channel_stats_and_rgb():
    imgs = np.zeros((4, 2, 2), dtype=np.uint8)
    imgs[:, 0, 0] = 255
    st = data.compute_channel_stats(data.to_rgb(imgs))
    assert st["mean"] == pytest.approx([0.25] * 3) and st["std"] == pytest.approx([np.sqrt(0.25 - 0.0625)] * 3, rel=1e-5)
    with pytest.raises(ValueError, match="expected N×H×W"):
        data.to_rgb(np.zeros((2, 3, 3, 4), dtype=np.uint8))


def test_label_columns_as_names_or_lists():
    s = data.spec("dermamnist")
    assert list(data._label_ids([[4], [0]], s)) == [4, 0]
    p = data.spec("oxford_pets")
    name = p.class_names[5]
    assert list(data._label_ids([name, name.upper()], p)) == [5, 5]
    with pytest.raises(ValueError, match="not in the registry"):
        data._label_ids(["not a breed"], p)
