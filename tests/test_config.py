import pytest

from tckr.core import paths
from tckr.core.config import Config, ConfigError, config_from_dict, load_config


@pytest.mark.parametrize("path", sorted(str(p) for p in paths.CONFIGS.rglob("*.yaml")))
def test_every_config_in_repo_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.study.dataset


def test_misspelled_key_is_named_with_accepted_keys():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"train": {"epocs": 3}})
    msg = str(e.value)
    assert "train.epocs" in msg and "did you mean 'epochs'" in msg and "weight_decay" in msg


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="trian"):
        config_from_dict({"trian": {}})


def test_misspelled_key_in_a_file_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("study:\n  dataset: fashion_mnist\nlora:\n  rnak: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*lora.rnak.*rank"):
        load_config(f)


@pytest.mark.parametrize("tree, pattern", [
    ({"train": {"epochs": "ten"}}, "train.epochs: expected an integer"),
    ({"train": {"flip": 1}}, "train.flip: expected true or false"),
    ({"gkd": {"label_mode": "fuzzy"}}, "gkd.label_mode.*'soft' | 'hard'"),
    ({"synthesis": {"cardinalities": [1, -2]}}, "must be positive"),
    ({"study": {"dataset": "nope"}}, "unknown dataset 'nope'.*fashion_mnist"),
    ({"mia": {"n_shadows": 3}}, "must be even"),
])
def test_bad_values_are_explained(tree, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(tree)


def test_overrides_and_hash():
    a = load_config("configs/tiny.yaml")
    b = load_config("configs/tiny.yaml", {"train.epochs": 7})
    assert b.train.epochs == 7 and a.train.epochs != 7
    assert a.hash() != b.hash()
    assert a.hash() == load_config("configs/tiny.yaml").hash()
    assert isinstance(b.train.lr, float)


def test_missing_config_lists_known_ones():
    with pytest.raises(FileNotFoundError, match="configs/mini.yaml"):
        load_config("configs/nope.yaml")


def test_paper_configs_cover_the_ten_datasets():
    names = {load_config(p).study.dataset for p in (paths.CONFIGS / "paper").glob("*.yaml")}
    assert names == {"cifar10", "cifar100", "oxford_pets", "tiny_imagenet", "stanford_cars", "food101", "stl10",
                     "imagenette", "imagewoof", "caltech101"}
    assert load_config("configs/paper/cifar10.yaml").lora.rank == 4
    assert max(load_config("configs/paper/caltech101.yaml").synthesis.cardinalities) == 10
