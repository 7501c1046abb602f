"""TrainSettings: one list of settings, checked once, resolved once; the backbone registry; the feature cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from imgasdata import backbones
from imgasdata.errors import SettingsError, UserError, WeightsError
from imgasdata.settings import TrainSettings, settings_table


def test_defaults_are_the_books():
    s = TrainSettings()
    assert (s.lr, s.momentum, s.batch_size, s.step_size, s.gamma, s.optimizer) == (0.001, 0.9, 4, 7, 0.1, "sgd")
    assert s.augment == ("crop", "flip") and s.mode == "auto"


def test_values_are_normalised():
    s = TrainSettings(epochs=3.0, lr=1, augment=["flip", "crop"], split=[0.6, 0.2, 0.2])
    assert s.epochs == 3 and isinstance(s.epochs, int) and isinstance(s.lr, float)
    assert s.augment == ("crop", "flip") and s.split == (0.6, 0.2, 0.2)
    assert TrainSettings(augment=True).augment == ("crop", "flip") and TrainSettings(augment=False).augment == ()


@pytest.mark.parametrize("kwargs, words", [
    ({"epochs": 2.5}, "epochs must be an integer"),
    ({"lr": "fast"}, "lr must be a number"),
    ({"momentum": -0.1}, "momentum must be a number in [0, 1)"),
    ({"mode": "gpu"}, "mode must be one of 'auto', 'head', 'full'"),
    ({"split": (0.5, 0.5, 0.5)}, "add up to 1"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"epochs": True}, "epochs must be an integer"),
])
def test_each_mistake_is_one_sentence_naming_the_setting(kwargs, words):
    with pytest.raises(SettingsError) as info:
        TrainSettings(**kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, (UserError, ValueError))


def test_unknown_setting_names_the_closest():
    with pytest.raises(SettingsError, match="unknown setting.*'batchsize'.*did you mean batch_size"):
        TrainSettings.from_kwargs(batchsize=4)


def test_resolve_is_where_machine_and_backbone_dependent_settings_are_decided():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    s = TrainSettings()
    on_cpu, on_gpu = s.resolve(cpu), s.resolve(gpu)
    assert on_cpu.mode == "head" and on_cpu.augment == ()  # head mode applies no augmentation
    assert on_gpu.mode == "full" and on_gpu.augment == ("crop", "flip")
    assert on_cpu.resize == "rescale-crop" and on_cpu.image_size == 224
    assert on_cpu.resolve(cpu) == on_cpu  # resolving twice changes nothing
    assert TrainSettings(image_size=96, resize="pad").resolve(cpu).preprocessing()["image_size"] == 96
    assert TrainSettings(mode="full", augment=["flip"]).resolve(cpu).augment == ("flip",)


def test_recorded_settings_leave_out_what_does_not_change_results():
    rec = TrainSettings(device="cpu", num_workers=3).recorded()
    assert "device" not in rec and "num_workers" not in rec
    assert rec["augment"] == ["crop", "flip"] and rec["lr"] == 0.001
    assert "split" not in rec  # how the data was split is recorded with the dataset


def test_settings_table_lists_every_setting_once():
    table = settings_table()
    assert table["setting"].tolist() == [f.name for f in dataclasses.fields(TrainSettings)]
    assert table["meaning"].str.len().gt(5).all()


def test_backbone_registry():
    assert backbones.find_source("efficientnet_lite0") is backbones.LITE_SOURCE
    assert backbones.find_source("resnet18") is backbones.TORCHVISION_SOURCE
    assert backbones.find_source("timm/resnet18.a1_in1k") is backbones.TIMM_SOURCE
    assert backbones.default_preprocessing("efficientnet_lite0")["mean"] == [0.5, 0.5, 0.5]
    assert backbones.default_preprocessing("efficientnet_lite0")["interpolation"] == "bicubic"
    assert backbones.default_preprocessing("timm/resnet18.a1_in1k")["crop_pct"] == pytest.approx(0.95)
    with pytest.raises(SettingsError, match="Unknown backbone 'timm/no_such_net'"):
        backbones.find_source("timm/no_such_net")
    assert len(backbones.imagenet_classes()) == 1000


def test_timm_backbone_builds_offline_and_weights_fail_with_one_clear_sentence(monkeypatch, tmp_path):
    from imgasdata.models import build_model

    model = build_model("timm/resnet18.a1_in1k", 3, weights="none")
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="Could not get the pretrained weights of resnet18.a1_in1k"):
        build_model("timm/resnet18.a1_in1k", 3, weights="imagenet")


def test_feature_cache_is_an_object_with_clear(tmp_path):
    from PIL import Image

    from imgasdata.batches import FeatureCache
    from imgasdata.models import build_model

    for i in range(3):
        Image.new("RGB", (40, 30), (40 * i, 80, 120)).save(tmp_path / f"{i}.png")
    paths = sorted(str(p) for p in tmp_path.glob("*.png"))
    model = build_model("efficientnet_lite0", 2, weights="none")
    pre = TrainSettings(image_size=32).preprocessing()
    cache = FeatureCache(max_entries=1)
    f1, errors = cache.features(model.backbone, "efficientnet_lite0", "none", paths, pre, "cpu", progress=False)
    assert f1.shape[0] == 3 and not errors and len(cache) == 1
    f2, _ = cache.features(model.backbone, "efficientnet_lite0", "none", paths, pre, "cpu", progress=False)
    assert f2 is f1  # a hit
    cache.features(model.backbone, "efficientnet_lite0", "none", paths[:2], pre, "cpu", progress=False)
    assert len(cache) == 1  # the oldest entry made room
    cache.clear()
    assert len(cache) == 0
