"""tckr.classifiers: building timm MobileNetV3 with a new head, saving and loading with checks."""

import numpy as np
import pytest
import torch

from tckr.classification import classifiers
from tckr.core import io


def test_build_small_input_has_stride1_stem_and_new_head():
    m = classifiers.build("mobilenetv3_small_050", 7, pretrained=False, input_size=32)
    assert m.conv_stem.stride == (1, 1)
    out = m.eval()(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 7)


def test_build_large_input_keeps_arch_stride():
    m = classifiers.build("mobilenetv3_small_050", 3, pretrained=False, input_size=224)
    assert m.conv_stem.stride == (2, 2)
    m2 = classifiers.build("mobilenetv3_small_050", 3, pretrained=False, input_size=224, stem_stride=1)
    assert m2.conv_stem.stride == (1, 1)


def test_unknown_arch_names_similar():
    with pytest.raises(ValueError, match="unknown timm architecture 'mobilenetv9'"):
        classifiers.build("mobilenetv9", 10, pretrained=False, input_size=32)


def test_pretrained_unreachable_is_a_clear_error(monkeypatch):
    import timm

    def boom(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", boom)
    with pytest.raises(classifiers.PretrainedUnavailableError, match="classifier.pretrained: false"):
        classifiers.build("mobilenetv3_small_050", 10, pretrained=True, input_size=224)


def test_save_load_roundtrip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    m = classifiers.build("mobilenetv3_small_050", 4, pretrained=False, input_size=32).eval()
    assert not [a for a in vars(m) if a.startswith("tckr")], "provenance rides on the torch module"
    trained = classifiers.TrainedClassifier(m, "mobilenetv3_small_050", 4, input_size=32,
                                            stem_stride=classifiers.resolved_stem_stride(32))
    norm = {"mean": [0.5] * 3, "std": [0.25] * 3}
    path = tmp_path / "w.safetensors"
    classifiers.save(trained, path, arch="mobilenetv3_small_050", class_names=list("abcd"), normalisation=norm,
                     config_hash="abc123", extra={"role": "teacher"})
    side = io.read_json(tmp_path / "w.json")
    assert side["arch"] == "mobilenetv3_small_050" and side["class_names"] == list("abcd")
    assert side["normalisation"] == norm and side["config_hash"] == "abc123" and side["input_size"] == 32
    assert side["stem_stride"] == 1
    loaded = classifiers.load_trained(path, arch="mobilenetv3_small_050", num_classes=4)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(m(x).numpy(), loaded(x).numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(m(x).numpy(), classifiers.load(path)(x).numpy(), rtol=1e-5, atol=1e-5)
    assert isinstance(classifiers.load(path), torch.nn.Module)
    assert (loaded.info["role"], loaded.arch, loaded.input_size, loaded.stem_stride) == ("teacher", "mobilenetv3_small_050", 32, 1)
    assert loaded.class_names == tuple("abcd") and loaded.normalisation == norm and loaded.config_hash == "abc123"
    assert loaded.path == path and loaded.meta == {k: v for k, v in side.items() if k != "sha256"}
    assert not loaded.training and loaded.state_dict().keys() == m.state_dict().keys()  # the module's own, passed through
    # a bare module is saved with the stride of its stem convolution (the model's own data)
    classifiers.save(m, tmp_path / "bare.safetensors", arch="mobilenetv3_small_050", class_names=list("abcd"),
                     normalisation=norm, config_hash="abc123", input_size=32)
    assert io.read_json(tmp_path / "bare.json")["stem_stride"] == 1
    with pytest.raises(classifiers.WeightsMismatchError, match=r"architecture is 'mobilenetv3_small_050', expected 'resnet18'; class count is 4, expected 10"):
        classifiers.load(path, arch="resnet18", num_classes=10)


def _saved(tmp_path, name="w"):
    torch.manual_seed(0)
    m = classifiers.build("mobilenetv3_small_050", 4, pretrained=False, input_size=32).eval()
    path = tmp_path / f"{name}.safetensors"
    classifiers.save(m, path, arch="mobilenetv3_small_050", class_names=list("abcd"),
                     normalisation={"mean": [0.5] * 3, "std": [0.25] * 3}, config_hash="abc123", extra={"role": "teacher"},
                     input_size=32)
    return m, path


def test_weights_without_a_recorded_sha256_are_refused(tmp_path):
    """A sidecar's sha256 is what tells a trained file from a damaged or replaced one: a file without it is refused,
    never loaded on trust (an altered file would otherwise pass once its sidecar was gone)."""
    _, path = _saved(tmp_path)
    side = classifiers.sidecar_path(path)
    classifiers.verify(path)
    tensors, meta = io.load_weights(path)
    tensors = {k: v + 1 if v.is_floating_point() else v for k, v in tensors.items()}
    io.save_weights(path, tensors, meta)  # altered weights, a readable file with all its metadata
    with pytest.raises(io.CorruptFileError, match="sha256 differs"):
        classifiers.load_trained(path)
    side.unlink()
    with pytest.raises(io.CorruptFileError, match=rf"{path}: no sidecar w.json .*delete it and rerun the phase that trained it"):
        classifiers.load_trained(path)
    with pytest.raises(io.CorruptFileError, match=str(path)):
        classifiers.verify(path)
    _, path = _saved(tmp_path, "v")
    side = classifiers.sidecar_path(path)
    io.write_json(side, {k: v for k, v in io.read_json(side).items() if k != "sha256"})
    with pytest.raises(io.CorruptFileError, match=rf"{path}: its sidecar v.json records no sha256"):
        classifiers.load(path)


def test_saving_the_same_classifier_twice_gives_the_same_bytes(tmp_path):
    """A rerun that writes the same weights leaves the same file and the same recorded sha256."""
    _, a = _saved(tmp_path, "a")
    _, b = _saved(tmp_path, "b")
    assert a.read_bytes() == b.read_bytes()
    assert io.read_json(classifiers.sidecar_path(a))["sha256"] == io.read_json(classifiers.sidecar_path(b))["sha256"]
