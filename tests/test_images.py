"""imgasdata.images: listing image files and opening every kind of odd or broken file safely."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest
from PIL import Image

from imgasdata.images import (
    IMAGE_EXTENSIONS,
    ImageLoadError,
    check_images,
    list_images,
    list_other_files,
    load_image,
    to_array,
)


# ----------------------------------------------------------------------------- list_images


@pytest.fixture
def tree(tmp_path, write_png):
    root = tmp_path / "photos"
    for rel in ("b.png", "a.JPG", "c.Jpeg", "sub/deeper/z.webp", "sub/x.PNG", "UPPER.TIF",
                ".hidden.png", ".ipynb_checkpoints/a-checkpoint.png", "sub/.cache/y.png",
                ".hiddendir/q.png"):
        write_png(root / rel)  # the bytes do not matter for listing
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "data.csv").write_text("a,b\n")
    return root


def test_list_images_sorted_recursive_skips_hidden_and_checkpoints(tree):
    found = list_images(tree)
    rel = [p.relative_to(tree).as_posix() for p in found]
    assert rel == sorted(rel)
    assert rel == ["UPPER.TIF", "a.JPG", "b.png", "c.Jpeg", "sub/deeper/z.webp", "sub/x.PNG"]
    assert all(p.is_file() and p.parent.is_relative_to(tree) for p in found)


def test_list_images_non_recursive(tree):
    rel = [p.name for p in list_images(tree, recursive=False)]
    assert rel == ["UPPER.TIF", "a.JPG", "b.png", "c.Jpeg"]


def test_list_images_extensions_case_insensitive_and_custom(tree):
    assert [p.name for p in list_images(tree, extensions=(".png",))] == ["b.png", "x.PNG"]
    assert ".webp" in IMAGE_EXTENSIONS and ".jpeg" in IMAGE_EXTENSIONS


def test_list_images_single_file_and_missing_folder(tree, tmp_path):
    assert list_images(tree / "b.png") == [tree / "b.png"]
    assert list_images(tree / "notes.txt") == []
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(tmp_path / "nope")


def test_list_other_files_reports_non_images(tree):
    others = [p.relative_to(tree).as_posix() for p in list_other_files(tree)]
    assert others == ["notes.txt", "sub/data.csv"]  # hidden folders skipped, images left out


# ----------------------------------------------------------------------------- bad-input zoo


@pytest.mark.parametrize("kind", ["corrupt", "truncated_png", "truncated_jpeg"])
def test_corrupt_and_truncated_files_raise_image_load_error(bad_image, kind):
    path = bad_image(kind)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_zero_byte_file(bad_image):
    path = bad_image("zero")
    with pytest.raises(ImageLoadError, match=r"empty file \(0 bytes\)") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match="is a folder, not an image file"):
        load_image(tmp_path)


def test_everything_named_like_an_image_is_listed_and_gets_a_clear_error(tmp_path):
    """Broken links and folders called x.jpg are listed (so they get error rows), never skipped."""
    from imgasdata.images import expand_inputs

    good = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(good)
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    listed = expand_inputs([tmp_path, tmp_path / "missing.png"])
    assert [p.name for p in listed] == ["a.png", "folder.jpg", "gone.jpg", "missing.png"]
    with pytest.raises(ImageLoadError, match="broken symbolic link"):
        load_image(tmp_path / "gone.jpg")


def test_png_bytes_with_jpg_extension_load_fine(bad_image):
    img = load_image(bad_image("png_as_jpg"))
    assert img.mode == "RGB" and img.size == (30, 20)
    assert img.getpixel((5, 5)) == (0, 128, 255)


def test_text_file_named_jpg_is_a_clear_error(bad_image):
    path = bad_image("text_as_jpg")
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message
    assert "not a readable image" in message


def test_grayscale_becomes_rgb_with_equal_channels(bad_image):
    img = load_image(bad_image("gray"))
    assert img.mode == "RGB" and img.size == (20, 10)
    assert (np.asarray(img) == 100).all()


def test_cmyk_jpeg_becomes_rgb(bad_image):
    path = bad_image("cmyk")
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    arr = np.asarray(load_image(path), dtype=int)
    assert arr.shape == (16, 16, 3)
    r, g, b = arr.reshape(-1, 3).mean(axis=0)
    assert r > 220 and g < 35 and b < 35, (r, g, b)  # CMYK (0, 255, 255, 0) is red


def test_16bit_png_is_scaled_not_clipped(bad_image):
    path = bad_image("i16")
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    arr = np.asarray(load_image(path), dtype=int)
    assert arr.shape == (4, 256, 3)
    row = arr[0, :, 0]
    expected = np.linspace(0, 65535, 256) / 65535 * 255
    assert np.abs(row - expected).max() <= 1.5  # a linear 0..65535 ramp maps onto 0..255
    assert row[0] == 0 and row[-1] == 255
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    assert (row == 255).mean() < 0.05  # clipping to 8 bits would make almost everything white


def test_dark_16bit_png_stays_dark(bad_image):
    arr = np.asarray(load_image(bad_image("i16_dark")), dtype=int)
    # 1000 of 65535 is about 4 of 255; clipping with convert("L") would give 255 (white)
    assert arr.max() <= 6


def test_palette_png_transparency_becomes_white(bad_image):
    path = bad_image("palette_transparent")
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    img = load_image(path)
    assert img.mode == "RGB"
    assert img.getpixel((1, 5)) == (255, 0, 0)  # opaque red
    assert img.getpixel((8, 5)) == (255, 255, 255)  # transparent green -> white, not green or black


def test_rgba_transparent_area_becomes_white(bad_image):
    img = load_image(bad_image("rgba"))
    assert img.mode == "RGB"
    assert img.getpixel((1, 1)) == (0, 0, 255)
    assert img.getpixel((8, 1)) == (255, 255, 255)


def test_semi_transparent_is_blended_on_white(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[...] = (255, 0, 0, 128)
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "half.png")
    r, g, b = load_image(tmp_path / "half.png").getpixel((0, 0))
    assert r == 255 and 120 <= g <= 135 and 120 <= b <= 135


def test_la_mode_png(tmp_path):
    img = Image.new("LA", (4, 4), (0, 0))  # black but fully transparent
    img.save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").getpixel((0, 0)) == (255, 255, 255)


def test_animated_gif_gives_first_frame(bad_image):
    path = bad_image("gif_animated")
    with Image.open(path) as raw:
        assert raw.n_frames == 3
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (12, 12)
    r, g, b = img.getpixel((6, 6))
    assert r > 200 and g < 50 and b < 50  # the red first frame, not blue or green


def test_exif_orientation_is_applied(bad_image):
    path = bad_image("exif6")
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
        assert raw.getexif().get(0x0112) == 6
    img = load_image(path)
    assert img.size == (20, 40)  # width and height swap
    arr = np.asarray(img, dtype=int)
    # rotating 90 degrees clockwise puts the red left half on top
    top, bottom = arr[:15].mean(axis=(0, 1)), arr[25:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_exif_orientation_with_draft_mode(bad_image):
    img = load_image(bad_image("exif6"), min_size=8)
    assert img.width < img.height  # still rotated when decoded in draft mode


def test_huge_dimensions_fail_fast_without_allocating(bad_image):
    path = bad_image("huge_header")
    assert path.stat().st_size < 200
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert time.perf_counter() - start < 2.0
    # decoding 30000 x 30000 RGB would need 2.7 GB; the process peak must not move by anything like that
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 200_000
    message = str(info.value).lower()
    assert str(path).lower() in message
    assert "decompression" in message and "bomb" in message


def test_over_pillow_warning_limit_is_an_error_too(bad_image):
    path = bad_image("big_header")  # 144 megapixels: Pillow only warns; we refuse
    start = time.perf_counter()
    with pytest.raises(ImageLoadError, match="decompression-bomb limit"):
        load_image(path)
    assert time.perf_counter() - start < 2.0


def test_huge_image_in_check_images_is_a_row_not_a_crash(bad_image):
    df = check_images([bad_image("huge_header")])
    assert not df.loc[0, "ok"] and "bomb" in df.loc[0, "error"].lower()


def test_jpeg_draft_mode_decodes_smaller_but_not_below_min_size(bad_image):
    path = bad_image("big_jpeg")
    full = load_image(path)
    assert full.size == (2400, 1600)
    small = load_image(path, min_size=300)
    assert small.mode == "RGB"
    assert small.width < 2400 and small.height < 1600  # decoded at a reduced scale
    assert min(small.size) >= 300
    assert abs(small.width / small.height - 1.5) < 0.01  # aspect kept
    tiny_request = load_image(path, min_size=1000)
    assert min(tiny_request.size) >= 1000


def test_draft_mode_ignored_for_png(tmp_path, write_png):
    path = write_png(tmp_path / "big.png", size=(800, 600))
    assert load_image(path, min_size=100).size == (800, 600)


def test_to_array(bad_image):
    path = bad_image("png_as_jpg")
    arr = to_array(path)
    assert arr.shape == (20, 30, 3) and arr.dtype == np.uint8
    arr2 = to_array(Image.new("L", (3, 2), 7))
    assert arr2.shape == (2, 3, 3) and (arr2 == 7).all()


# ----------------------------------------------------------------------------- check_images


def test_check_images_one_row_per_file_never_raises(bad_image, tmp_path):
    kinds = ["rgb", "corrupt", "zero", "text_as_jpg", "png_as_jpg", "cmyk", "i16", "gif_animated",
             "huge_header", "truncated_png"]
    paths = [bad_image(k) for k in kinds] + [tmp_path / "does_not_exist.png"]
    df = check_images(paths)
    assert list(df.columns) == ["path", "ok", "width", "height", "mode", "format", "n_frames", "error"]
    assert len(df) == len(paths)
    assert list(df["path"]) == [str(p) for p in paths]
    status = dict(zip(kinds + ["missing"], df["ok"]))
    assert status == {"rgb": True, "corrupt": False, "zero": False, "text_as_jpg": False, "png_as_jpg": True,
                      "cmyk": True, "i16": True, "gif_animated": True, "huge_header": False,
                      "truncated_png": False, "missing": False}
    ok = df[df["ok"]]
    assert (ok["error"] == "").all()
    bad = df[~df["ok"]]
    assert (bad["error"].str.len() > 0).all()
    assert all(p in e for p, e in zip(bad["path"], bad["error"]))
    rows = df.set_index(df["path"].map(lambda p: p.rsplit("/", 1)[-1]))
    assert rows.loc["cmyk.jpg", "mode"] == "CMYK"
    assert rows.loc["i16.png", "mode"].startswith("I")
    assert rows.loc["gif_animated.gif", "n_frames"] == 3
    assert rows.loc["png_as_jpg.jpg", "format"] == "PNG"
    assert (rows.loc["png_as_jpg.jpg", "width"], rows.loc["png_as_jpg.jpg", "height"]) == (30, 20)


def test_check_images_on_sample_new_images(sample_data):
    from imgasdata.sample_data import BROKEN_FILE

    files = list_images(sample_data["new_images"])
    df = check_images(files)
    assert len(df) == len(files) == 7
    assert df.loc[~df["ok"], "path"].map(lambda p: p.rsplit("/", 1)[-1]).tolist() == [BROKEN_FILE]


def test_check_images_empty_list():
    df = check_images([])
    assert len(df) == 0 and "error" in df.columns
