"""imgasdata errors: the list of mistakes, a gallery with file names and Grad-CAM maps, from the shared run."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import PAIR, run_cli
from imgasdata.mistakes import COLUMNS, mistakes_table


@pytest.fixture(scope="module")
def mislabelled(pair_dir, tmp_path_factory):
    """Test images of both classes with 3 of each filed under the other class (sure mistakes) and one broken file."""
    root = tmp_path_factory.mktemp("mislabelled") / "images"
    a, b = PAIR
    for cls, other in ((a, b), (b, a)):
        files = sorted((pair_dir / "test" / cls).glob("*.png"))
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / other).mkdir(parents=True, exist_ok=True)
        for f in files[:3]:
            shutil.copyfile(f, root / cls / f.name)  # right
        for f in files[3:6]:
            shutil.copyfile(f, root / other / f"swapped_{f.name}")  # filed under the wrong class
    (root / a / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return root


def test_cli_errors_writes_the_list_the_gallery_and_grad_cam(capsys, trained_run, mislabelled, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "mistakes"
    code, stdout, err = run_cli(capsys, "errors", run_dir, mislabelled, "--out", out, "--n", "2", "--device", "cpu")
    assert code == 0, err
    table = pd.read_csv(out / "errors.csv", keep_default_na=False, na_values={"probability": [""]})
    assert list(table.columns) == COLUMNS
    wrong, broken = table[table["error"] == ""], table[table["error"] != ""]
    # the broken file gets its row, last, with the reason; it is not counted as a mistake
    assert broken["path"].str.endswith("broken.png").tolist() == [True] and table.index[-1] == broken.index[0]
    assert (wrong["true"] != wrong["predicted"]).all()
    # the six swapped files are wrong (the shared run scores over 90 % on these images)
    assert wrong["path"].str.contains("swapped_").sum() >= 5
    assert wrong["probability"].is_monotonic_decreasing and wrong["probability"].between(0.5, 1).all()
    assert f"{len(wrong)} mistake(s) among 12 images" in stdout and "95 % intervals" in stdout
    assert "could not be read" in err
    assert Image.open(out / "gallery.png").size[0] > 400
    cams = sorted((out / "gradcam").glob("*.png"))
    assert [c.name[:3] for c in cams] == ["01_", "02_"]
    assert cams[0].name[3:].startswith(pd.Series(wrong["path"]).iloc[0].rsplit("/", 1)[-1].rsplit(".", 1)[0])
    assert not list(out.rglob("*.part"))  # written by temporary file and rename

    # a second call with fewer maps leaves no picture of the first one behind
    code, _, err = run_cli(capsys, "errors", run_dir, mislabelled, "--out", out, "--n", "1", "--device", "cpu")
    assert code == 0, err
    assert [c.name[:3] for c in sorted((out / "gradcam").glob("*.png"))] == ["01_"]


def test_cli_errors_refuses_an_output_among_the_images(capsys, trained_run, mislabelled):
    run_dir, _ = trained_run
    before = sorted(p.name for p in mislabelled.rglob("*"))
    code, _, err = run_cli(capsys, "errors", run_dir, mislabelled, "--out", mislabelled / PAIR[0] / "errs")
    assert code == 2 and "inside, the input" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in mislabelled.rglob("*")) == before


def test_mistakes_table_sorts_by_confidence_and_keeps_unreadable_files():
    preds = pd.DataFrame({"path": ["a.png", "b.png", "c.png", "d.png", "e.png"],
                          "true": ["cat", "cat", "dog", "dog", "cat"],
                          "label": ["dog", "cat", "cat", "", "dog"],
                          "prob_cat": [0.4, 0.9, 0.8, np.nan, 0.1],
                          "prob_dog": [0.6, 0.1, 0.2, np.nan, 0.9],
                          "error": ["", "", "", "cannot identify image file", ""]})
    table = mistakes_table(preds)
    assert table["path"].tolist() == ["e.png", "c.png", "a.png", "d.png"]
    assert table["probability"].tolist()[:3] == pytest.approx([0.9, 0.8, 0.6])
    assert table["predicted"].tolist() == ["dog", "cat", "dog", ""]
    assert table["error"].tolist()[-1] == "cannot identify image file"


def test_gallery_can_show_file_names(pair_dir):
    from imgasdata.plots import show_predictions

    files = sorted((pair_dir / "test" / PAIR[0]).glob("*.png"))[:2]
    rows = pd.DataFrame({"path": [str(f) for f in files], "label": PAIR[0], "pred": PAIR[1],
                         f"prob_{PAIR[1]}": [0.9, 0.7]})
    texts = [t.get_text() for ax in show_predictions(rows, file_names=True).axes for t in ax.texts]
    assert texts == [f.name for f in files]
    assert not [t for ax in show_predictions(rows).axes for t in ax.texts]
