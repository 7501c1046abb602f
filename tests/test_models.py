"""imgasdata.models, backbones, weights and runs: the replaced last layer, offline weights, safe loading, saved runs."""

from __future__ import annotations

import errno
import json
import shutil
import urllib.error

import pytest
import torch
from torch import nn

from imgasdata import backbones, runs, weights
from imgasdata import models as imodels
from imgasdata.errors import WeightsError
from imgasdata.images import load_image
from imgasdata.transforms import build_transform


class NotATensor:
    """Any Python object: unpickling a file that holds one could run code."""

    def __init__(self):
        self.value = 42


@pytest.fixture(scope="module")
def lite_imagenet():
    """efficientnet_lite0 with its 1000-class ImageNet layer (weights from the pip package)."""
    return imodels.imagenet_model("efficientnet_lite0", "imagenet")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no network, whatever machine the tests run on."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in the test")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    yield tmp_path / "hub"


# ----------------------------------------------------------------------------- the new head


@pytest.mark.parametrize("num_classes", [2, 6])
def test_build_model_replaces_last_layer(num_classes):
    torch.manual_seed(0)
    model = imodels.build_model("efficientnet_lite0", num_classes, weights="imagenet", dropout=0.2)
    assert isinstance(model, imodels.Classifier)
    linear = model.head[-1]
    assert isinstance(linear, nn.Linear)
    assert linear.out_features == num_classes and linear.in_features == 1280
    assert isinstance(model.head[0], nn.Dropout) and model.head[0].p == pytest.approx(0.2)
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert abs(linear.weight.mean().item()) < 0.002
    assert torch.count_nonzero(linear.bias) == 0
    # the backbone's own 1000-way layer is gone
    assert not any(isinstance(m, nn.Linear) for m in model.backbone.modules())
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, num_classes)


def test_build_model_keeps_pretrained_backbone(lite_imagenet):
    model = imodels.build_model("efficientnet_lite0", 2, weights="imagenet")
    ref = {k: v for k, v in lite_imagenet.state_dict().items() if not k.startswith("classifier")}
    own = model.backbone.state_dict()
    assert set(ref) == {k for k in own}
    assert all(torch.equal(own[k], ref[k]) for k in ref)


def test_build_model_needs_two_classes():
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        imodels.build_model("efficientnet_lite0", 1, weights="none")


def test_new_head_init():
    torch.manual_seed(1)
    head = imodels.new_head(512, 3)
    assert head[1].weight.shape == (3, 512)
    assert head[1].weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert head[1].bias.abs().sum() == 0


# ----------------------------------------------------------------------------- ImageNet weights offline


def test_lite_imagenet_weights_are_real(lite_imagenet, sample_data):
    """Offline ImageNet weights recognise real photos: a cat is a cat, coffee is coffee."""
    names = backbones.imagenet_classes()
    assert len(names) == 1000 and names[281] == "tabby"
    pre = backbones.default_preprocessing("efficientnet_lite0")
    tf = build_transform(pre, train=False)
    photos = sample_data["photos"]
    batch = torch.stack([tf(load_image(photos / f"{n}.jpg")) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        probs = torch.softmax(lite_imagenet(batch), dim=1)
    top5 = [[names[i] for i in row.topk(5).indices] for row in probs]
    cats = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
    assert cats & set(top5[0]), top5[0]
    assert top5[0][0] in cats | {"lynx"}, top5[0]
    assert {"espresso", "cup", "coffee mug"} & set(top5[1][:2]), top5[1]
    # and they are not just random weights: a confident top class
    assert probs[1].max() > 0.5


def test_default_preprocessing_lite_and_torchvision():
    lite = backbones.default_preprocessing("efficientnet_lite0")
    assert lite["image_size"] == 224 and lite["resize"] == "rescale-crop"
    assert lite["mean"] == pytest.approx([0.5, 0.5, 0.5]) and lite["std"] == pytest.approx([0.5, 0.5, 0.5])
    assert 0 < lite["crop_pct"] <= 1
    assert backbones.default_preprocessing("efficientnet_lite2")["image_size"] == 260
    rn = backbones.default_preprocessing("resnet18")  # needs no download
    assert rn["image_size"] == 224 and rn["crop_pct"] == pytest.approx(224 / 256, abs=1e-3)
    assert rn["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ValueError) as info:
        imodels.build_model("resnet19", 2)
    msg = str(info.value)
    assert "Unknown backbone 'resnet19'" in msg and "Did you mean" in msg and "resnet18" in msg
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        backbones.default_preprocessing("efficientnet_lit0")
    with pytest.raises(ValueError, match="Unknown backbone"):
        imodels.imagenet_model("zzzzzz")


def test_available_backbones():
    names = backbones.available_backbones()
    assert names[:3] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert "resnet18" in names


def test_resnet18_imagenet_offline_is_a_clear_user_error(offline_hub):
    from imgasdata.errors import UserError

    with pytest.raises(UserError) as info:
        imodels.build_model("resnet18", 2, weights="imagenet")
    msg = str(info.value)
    assert "resnet18" in msg
    assert "efficientnet_lite0" in msg and "--weights PATH" in msg
    assert "resnet18-f37072fd.pth" in msg and str(offline_hub) in msg


def test_resnet18_without_weights():
    torch.manual_seed(0)
    model = imodels.build_model("resnet18", 3, weights="none")
    assert model.head[-1].in_features == 512 and model.head[-1].out_features == 3
    assert isinstance(model.backbone.fc, nn.Identity)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 3)


# ----------------------------------------------------------------------------- local weights files


@pytest.fixture(scope="module")
def resnet_state():
    import torchvision

    torch.manual_seed(123)
    return torchvision.models.resnet18(weights=None).state_dict()


def test_local_state_dict_file_loads_via_weights_path(tmp_path, resnet_state):
    path = tmp_path / "resnet18_local.pth"
    torch.save(resnet_state, path)
    torch.manual_seed(999)  # a different random init, so equality means "loaded"
    model = imodels.build_model("resnet18", 2, weights=str(path), allow_pt=True)
    own = model.backbone.state_dict()
    for key in ("conv1.weight", "layer4.1.conv2.weight", "bn1.running_mean"):
        assert torch.equal(own[key], resnet_state[key])


def test_local_weights_wrapped_in_state_dict_key_and_other_fc(tmp_path, resnet_state):
    state = dict(resnet_state)
    state["fc.weight"] = torch.zeros(10, 512)  # e.g. fine-tuned on 10 classes elsewhere
    state["fc.bias"] = torch.zeros(10)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": state}, path)
    model = imodels.imagenet_model("resnet18", str(path), allow_pt=True)
    assert torch.equal(model.conv1.weight, resnet_state["conv1.weight"])


def test_local_safetensors_weights(tmp_path, resnet_state):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in resnet_state.items()}, str(path))
    assert torch.equal(weights.load_state_dict_file(path)["conv1.weight"], resnet_state["conv1.weight"])
    model = imodels.build_model("resnet18", 2, weights=path)
    assert torch.equal(model.backbone.layer1[0].conv1.weight, resnet_state["layer1.0.conv1.weight"])


def test_old_checkpoint_without_num_batches_tracked_loads(tmp_path, resnet_state):
    """Checkpoints saved before PyTorch 0.4.1 lack BatchNorm's num_batches_tracked counters."""
    state = {k: v for k, v in resnet_state.items() if not k.endswith("num_batches_tracked")}
    assert len(state) < len(resnet_state)
    path = tmp_path / "old.pth"
    torch.save(state, path)
    model = imodels.build_model("resnet18", 2, weights=path, allow_pt=True)
    assert torch.equal(model.backbone.layer2[1].bn2.running_var, resnet_state["layer2.1.bn2.running_var"])


@pytest.mark.parametrize("other", ["resnet34", "resnet50"])
def test_weights_of_another_architecture_are_refused(tmp_path, other):
    """resnet50's tensors have other shapes; resnet34's include all of resnet18's names and more."""
    import torchvision

    path = tmp_path / f"{other}.pth"
    torch.save(torchvision.models.get_model(other, weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="do not match this backbone"):
        imodels.build_model("resnet18", 2, weights=path, allow_pt=True)


def test_missing_weights_file():
    with pytest.raises(FileNotFoundError, match="Weights file not found"):
        imodels.build_model("resnet18", 2, weights="/nonexistent/weights.pth")


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": NotATensor()}, path)
    with pytest.raises(ValueError) as info:
        weights.load_state_dict_file(path, allow_pt=True)
    message = str(info.value)
    assert "Refusing" in message and "unpickl" in message and str(path) in message
    assert "NotATensor" in message  # says what it found
    assert "\n" not in message and "\x1b" not in message  # one plain line, no terminal colour codes


def test_pickled_whole_module_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Sequential(nn.Linear(3, 2)), path)
    with pytest.raises(ValueError, match="Refusing"):
        weights.load_state_dict_file(path, allow_pt=True)
    with pytest.raises(ValueError, match="Refusing"):
        imodels.build_model("resnet18", 2, weights=path, allow_pt=True)


def test_non_state_dict_tensors_file_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        weights.load_state_dict_file(path, allow_pt=True)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="junk.pt"):
        weights.load_state_dict_file(junk, allow_pt=True)


def test_pt_file_needs_the_opt_in_and_says_how_to_convert(tmp_path, resnet_state):
    """A .pt/.pth is a pickle: refused by default with the three lines that turn it into safetensors."""
    path = tmp_path / "colleague.pth"
    torch.save(resnet_state, path)
    with pytest.raises(WeightsError) as info:
        imodels.build_model("resnet18", 2, weights=path)
    message = str(info.value)
    assert "--allow-pickle-weights" in message and "save_file" in message and "\n" not in message
    # the conversion the message gives works, and its result loads without the opt-in
    target = tmp_path / "colleague.safetensors"
    code = message[message.index("import torch"):]
    exec(code, {})  # noqa: S102 - the message's own recipe, on our own test file
    assert target.is_file()
    model = imodels.build_model("resnet18", 2, weights=target)
    assert torch.equal(model.backbone.conv1.weight, resnet_state["conv1.weight"])


def test_damaged_safetensors_is_a_weights_error(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        weights.load_state_dict_file(path)


@pytest.mark.parametrize("failure", [TypeError("a bug"), OSError(errno.ENOSPC, "No space left on device")])
def test_download_bug_or_full_disk_keeps_its_traceback(monkeypatch, failure):
    """Only network and damaged-download failures become a WeightsError; a bug or a full disk does not."""
    import torchvision

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", fail)
    with pytest.raises(type(failure)) as info:
        imodels.build_model("resnet18", 2, weights="imagenet")
    assert not isinstance(info.value, WeightsError)


def test_imagenet_class_names_belong_to_the_backbone():
    assert backbones.imagenet_classes("efficientnet_lite0")[281] == "tabby"
    assert len(backbones.imagenet_classes("resnet18")) == 1000
    in22k = backbones.imagenet_classes("timm/convnext_tiny.fb_in22k")
    assert len(in22k) == 21841 and in22k[:2] != backbones.imagenet_classes()[:2]


# ----------------------------------------------------------------------------- saved runs


def _manifest(classes):
    return {"format": runs.MANIFEST_FORMAT, "classes": classes,
            "settings": {"backbone": "efficientnet_lite0", "dropout": 0.1},
            "preprocessing": backbones.default_preprocessing("efficientnet_lite0")}


def _old_manifest(classes):
    """A manifest as written before the one-settings-block layout."""
    return {"backbone": "efficientnet_lite0", "weights": "imagenet", "mode": "head", "seed": 3,
            "classes": classes, "hyperparameters": {"dropout": 0.1, "lr": 0.01},
            "settings": {"backbone": "efficientnet_lite0", "lr": 0.01, "dropout": 0.1, "split": [0.8, 0.1, 0.1]},
            "preprocessing": backbones.default_preprocessing("efficientnet_lite0")}


def test_old_manifest_is_read_through_the_converter(tmp_path):
    torch.manual_seed(0)
    model = imodels.build_model("efficientnet_lite0", 2, weights="none", dropout=0.1)
    run_dir = runs.save_model(tmp_path / "run", model, _old_manifest(["x", "y"]))
    loaded, manifest = runs.load_model(run_dir)
    assert manifest["settings"] == {"backbone": "efficientnet_lite0", "weights": "imagenet", "mode": "head",
                                    "seed": 3, "lr": 0.01, "dropout": 0.1}
    assert "hyperparameters" not in manifest and "backbone" not in manifest
    assert loaded.head[0].p == pytest.approx(0.1)  # dropout read from the settings
    settings = runs.run_settings(manifest)
    assert settings.mode == "head" and settings.seed == 3 and settings.lr == 0.01


def test_save_and_load_model_round_trip(tmp_path):
    torch.manual_seed(0)
    model = imodels.build_model("efficientnet_lite0", 3, weights="imagenet", dropout=0.1)
    with torch.no_grad():
        model.head[-1].weight.normal_()  # something a fresh model would not have
        model.head[-1].bias.uniform_()
    manifest = _manifest(["a", "b", "c"])
    run_dir = runs.save_model(tmp_path / "run", model, manifest)
    assert (run_dir / "model.safetensors").is_file()
    assert json.loads((run_dir / "manifest.json").read_text()) == manifest
    loaded, loaded_manifest = runs.load_model(run_dir)
    assert loaded_manifest == manifest
    assert not loaded.training
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


def test_load_model_accepts_plain_state_dict_model_pt(tmp_path):
    torch.manual_seed(0)
    model = imodels.build_model("efficientnet_lite0", 2, weights="none")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps(_manifest(["x", "y"])))
    torch.save(model.state_dict(), run_dir / "model.pt")
    with pytest.raises(WeightsError, match="allow-pickle-weights"):
        runs.load_model(run_dir)
    loaded, _ = runs.load_model(run_dir, allow_pt=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


def test_load_model_refuses_pickled_module(tmp_path, trained_run):
    run_dir, _ = trained_run
    bad = tmp_path / "bad_run"
    bad.mkdir()
    shutil.copyfile(run_dir / "manifest.json", bad / "manifest.json")
    model, _ = runs.load_model(run_dir)
    torch.save(model, bad / "model.pt")  # the whole module, pickled
    with pytest.raises(ValueError, match="Refusing"):
        runs.load_model(bad)
    with pytest.raises(ValueError, match="Refusing"):
        runs.load_model(bad, allow_pt=True)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json is missing"):
        runs.load_model(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(["x", "y"])))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        runs.load_model(tmp_path)


def test_pick_device():
    assert imodels.pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert imodels.pick_device().type == "cuda"
    else:
        assert imodels.pick_device().type in ("cpu", "mps")


def test_dependencies_rule_out_unsafe_loading_releases():
    """torch < 2.6 had a weights_only remote-code flaw (CVE-2025-32434); pillow < 10.3 a libwebp one."""
    import re
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[1]
    deps = {Requirement(d).name: Requirement(d).specifier
            for d in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name, too_old, fine in (("torch", "2.5.1", "2.6.0"), ("torchvision", "0.20.1", "0.21.0"),
                                ("pillow", "10.2.0", "10.3.0")):
        assert not deps[name].contains(too_old) and deps[name].contains(fine), name
    # the lock (which the Dockerfile and environment.yml install) pins releases the ranges admit
    locked = {p["name"]: p["version"] for p in tomllib.loads((root / "pylock.toml").read_text())["packages"]}
    for name in ("torch", "torchvision", "pillow"):
        assert deps[name].contains(re.sub(r"\+.*", "", locked[name])), name
