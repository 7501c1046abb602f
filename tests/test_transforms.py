"""imgasdata.transforms: the four resizing strategies, train/eval transforms, normalization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from torchvision import transforms as T

from imgasdata.transforms import (
    RESIZE_METHODS,
    augmentations,
    Resize,
    build_transform,
    check_preprocessing,
    compute_normalization,
    decode_size,
    to_display,
)

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def pre(**changes):
    base = {"resize": "rescale-crop", "image_size": 32, "crop_pct": 1.0, "interpolation": "bilinear",
            "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    base.update(changes)
    return base


def solid(colour, size=(40, 30)):
    return Image.new("RGB", size, colour)


def bands(width=200, height=100):
    """Left quarter green, middle half red, right quarter blue."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, : width // 4] = GREEN
    arr[:, width // 4 : 3 * width // 4] = RED
    arr[:, 3 * width // 4 :] = BLUE
    return Image.fromarray(arr)


@pytest.mark.parametrize("method", RESIZE_METHODS)
@pytest.mark.parametrize("shape", [(200, 100), (100, 200), (50, 50), (10, 7)])
def test_every_strategy_gives_size_by_size(method, shape):
    out = Resize(48, method, crop_pct=0.875)(bands(*shape))
    assert out.size == (48, 48)
    assert out.mode == "RGB"


def test_squish_keeps_everything_but_distorts():
    arr = np.asarray(Resize(64, "squish")(bands()))
    assert (arr[:, 3] == GREEN).all() and (arr[:, 60] == BLUE).all()  # both edges survive
    assert (arr[:, 32] == RED).all()


def test_pad_keeps_aspect_with_black_borders_top_and_bottom():
    arr = np.asarray(Resize(64, "pad")(solid(RED, (200, 100))), dtype=int)
    # 200x100 scales to 64x32: 16 black rows above and below
    assert (arr[:16] == 0).all() and (arr[48:] == 0).all()
    assert (arr[17:47] == RED).all()


def test_pad_tall_picture_gets_black_borders_left_and_right():
    arr = np.asarray(Resize(64, "pad")(solid(BLUE, (50, 100))), dtype=int)
    assert (arr[:, :16] == 0).all() and (arr[:, 48:] == 0).all()
    assert (arr[:, 17:47] == BLUE).all()


def test_pad_keeps_all_content():
    arr = np.asarray(Resize(64, "pad")(bands()), dtype=int)
    assert (arr[32, 2] == GREEN).all() and (arr[32, 61] == BLUE).all()


def test_crop_cuts_centre_at_original_scale():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (100, 200, 3), dtype=np.uint8)
    out = np.asarray(Resize(64, "crop")(Image.fromarray(src)))
    assert (out == src[18:82, 68:132]).all()  # no rescaling at all


def test_crop_of_small_picture_pads_with_black():
    arr = np.asarray(Resize(64, "crop")(solid((255, 255, 255), (20, 20))), dtype=int)
    assert (arr[22:42, 22:42] == 255).all()
    assert (arr[:20] == 0).all() and (arr[44:] == 0).all() and (arr[:, :20] == 0).all()


def test_rescale_crop_loses_the_edges_of_wide_pictures():
    arr = np.asarray(Resize(64, "rescale-crop")(bands()), dtype=int)
    # shorter side to 64 (128x64), the centre 64 columns are the red middle half:
    # no green or blue edge is left (only the outermost columns are blended by resampling)
    assert (arr[:, 2:62] == RED).all()
    assert arr[..., 1].max() < 128 and arr[..., 2].max() < 128


def test_rescale_crop_pct_resizes_shorter_side_to_size_over_pct():
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (100, 100, 3), dtype=np.uint8))
    a = np.asarray(Resize(56, "rescale-crop", crop_pct=0.875)(img))
    b = np.asarray(Resize(64, "rescale-crop", crop_pct=1.0)(img))
    assert (a == b[4:60, 4:60]).all()  # 56 / 0.875 = 64, then the centre 56


def test_build_transform_eval_is_deterministic_and_normalized():
    p = pre(image_size=32)
    tf = build_transform(p, train=False)
    x = tf(solid((128, 64, 191), (50, 40)))
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(x, tf(solid((128, 64, 191), (50, 40))))
    expected = (torch.tensor([128, 64, 191]) / 255 - 0.5) / 0.25
    assert torch.allclose(x[:, 5, 5], expected, atol=1e-5)


def test_build_transform_train_is_random_with_same_shape():
    p = pre(image_size=32)
    rng = np.random.default_rng(2)
    img = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    torch.manual_seed(0)
    tf = build_transform(p, train=True)
    outs = [tf(img) for _ in range(4)]
    assert all(o.shape == (3, 32, 32) for o in outs)
    assert not all(torch.equal(outs[0], o) for o in outs[1:])  # random crops/flips differ
    torch.manual_seed(0)
    again = [tf(img) for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(outs, again))  # seeded: repeatable


def test_build_transform_train_without_augment_equals_eval():
    p = pre(image_size=32)
    img = bands(90, 60)
    assert torch.equal(build_transform(p, train=True, augment=False)(img), build_transform(p)(img))
    # flip only: either identical or a mirror image of the eval output
    flip_only = build_transform(p, train=True, augment=["flip"])
    ref = build_transform(p)(img)
    for _ in range(5):
        out = flip_only(img)
        assert torch.equal(out, ref) or torch.equal(out, ref.flip(-1))


def test_augmentations_setting():
    assert augmentations(True) == ("crop", "flip")
    assert augmentations(False) == () and augmentations([]) == ()
    assert augmentations(["flip", "crop"]) == ("crop", "flip")
    assert augmentations("flip") == ("flip",)
    with pytest.raises(ValueError, match="rotate"):
        augmentations(["rotate"])
    img = bands(90, 60)
    p = pre(image_size=32)
    crop_only = build_transform(p, train=True, augment=["crop"])
    assert any(isinstance(t, T.RandomResizedCrop) for t in crop_only.transforms)
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in crop_only.transforms)
    assert crop_only(img).shape == (3, 32, 32)


def test_compute_normalization_solid_colour():
    images = [solid((255, 0, 128)) for _ in range(3)]
    mean, std = compute_normalization(images, pre(image_size=16))
    assert mean == pytest.approx([1.0, 0.0, 128 / 255], abs=1e-3)
    assert std == pytest.approx([0.0, 0.0, 0.0], abs=1e-3)


def test_compute_normalization_black_and_white(tmp_path):
    paths = []
    for i, c in enumerate([(0, 0, 0), (255, 255, 255)]):
        paths.append(tmp_path / f"{i}.png")
        solid(c).save(paths[-1])
    mean, std = compute_normalization(paths, pre(image_size=16))  # paths work too
    assert mean == pytest.approx([0.5] * 3, abs=1e-3)
    assert std == pytest.approx([0.5] * 3, abs=1e-3)


def test_compute_normalization_skips_unreadable_files(tmp_path):
    good = tmp_path / "white.png"
    solid((255, 255, 255)).save(good)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    mean, std = compute_normalization([good, broken, tmp_path / "missing.png"], pre(image_size=16))
    assert mean == pytest.approx([1.0] * 3, abs=1e-3) and std == pytest.approx([0.0] * 3, abs=1e-3)
    with pytest.raises(ValueError, match="at least one image"):
        compute_normalization([broken], pre(image_size=16))


def test_compute_normalization_needs_images():
    with pytest.raises(ValueError, match="at least one image"):
        compute_normalization([], pre())


@pytest.mark.parametrize("changes, match", [
    ({"resize": "stretch"}, "resize must be one of"),
    ({"interpolation": "lanczos"}, "interpolation must be one of"),
    ({"image_size": 8}, "image_size must be at least 16"),
    ({"crop_pct": 0}, r"crop_pct must be in \(0, 1\]"),
    ({"crop_pct": 1.5}, r"crop_pct must be in \(0, 1\]"),
])
def test_check_preprocessing_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        check_preprocessing(pre(**changes))
    with pytest.raises(ValueError, match=match):
        build_transform(pre(**changes))


def test_check_preprocessing_accepts_good_settings():
    p = pre()
    assert check_preprocessing(p) is p


def test_decode_size():
    assert decode_size(pre(image_size=224, crop_pct=0.875)) == 257
    assert decode_size(pre(image_size=64, crop_pct=1.0)) == 65


def test_to_display_undoes_normalization():
    p = pre(image_size=16)
    img = solid((200, 100, 50), (16, 16))
    arr = to_display(build_transform(p)(img), p)
    assert arr.shape == (16, 16, 3)
    assert np.allclose(arr, np.asarray(img) / 255, atol=1e-5)
