"""The replication capsule: the environment record, the summary's numbers and the check against a reference."""

import json
import shutil

import nbformat
import pandas as pd
import pytest

from imgasdata import capsule
from imgasdata.cli import main
from imgasdata.errors import UserError


def _results_with_run(tmp_path, trained_run, notebook="03_fine_tune_binary"):
    """A results folder whose notebook 03 saved the shared trained run as its best_run."""
    run_dir, _ = trained_run
    results = tmp_path / "results"
    shutil.copytree(run_dir, results / "notebooks" / notebook / "best_run")
    (results / capsule.ENVIRONMENT).write_text(json.dumps({"data_dir": str(tmp_path / "data")}))
    return results


def test_summary_reads_the_run_the_notebook_saved_and_names_what_is_missing(tmp_path, trained_run):
    results = _results_with_run(tmp_path, trained_run)
    table = capsule.write_summary(results)
    assert list(table.columns) == capsule.COLUMNS
    acc = table.set_index(["notebook", "quantity"]).loc[("03", "test_accuracy")]
    metrics = json.loads((trained_run[0] / "metrics.json").read_text())["test"]
    assert acc["value"] == pytest.approx(metrics["accuracy"]) and acc["kind"] == "proportion"
    assert acc["n"] == sum(map(sum, metrics["confusion_matrix"]))
    lr = table.set_index(["notebook", "quantity"]).loc[("03", "chosen_lr")]
    assert lr["value"] == pytest.approx(0.01) and lr["book"] == 0.0005
    # notebook 04 did not run here: its rows stay, empty, with the reason
    missing = table[table["notebook"] == "04"]
    assert len(missing) == 2 and missing["value"].isna().all()
    assert missing["source"].str.startswith("missing").all()
    assert (results / "summary.md").read_text().startswith("# Replication summary")


def test_the_books_tables_are_recomputed_to_their_printed_digits(tmp_path):
    table = capsule.summarize(tmp_path).set_index("quantity")
    for name in ("table3_accuracy", "table3_precision", "table3_recall", "table4_accuracy", "table4_recall"):
        row = table.loc[name]
        assert abs(row["value"] - row["book"]) <= 0.0005, name
    assert table.loc["table3_accuracy", "n"] == 815


def _summary(tmp_path, name, rows):
    path = tmp_path / name
    pd.DataFrame(rows, columns=["notebook", "quantity", "value", "kind", "n"]).to_csv(path, index=False)
    return path


REFERENCE_ROWS = [("03", "test_accuracy", 0.9, "proportion", 30), ("03", "chosen_lr", 0.001, "setting", None),
                  ("01", "duplicates_found", 120, "count", None), ("02", "table3_recall", 0.8863, "book", 422)]


def test_check_passes_within_tolerance_and_names_the_number_that_moved(tmp_path, capsys):
    ref = _summary(tmp_path, "ref.csv", REFERENCE_ROWS)
    same = _summary(tmp_path, "same.csv", [("03", "test_accuracy", 0.9333, "proportion", 30)] + REFERENCE_ROWS[1:])
    assert capsule.check(same, ref)["ok"].all()  # one image of 30 moved: within 1/n
    assert main(["capsule", "check", str(same), "--reference", str(ref)]) == 0

    moved = _summary(tmp_path, "moved.csv", [("03", "test_accuracy", 0.8, "proportion", 30)] + REFERENCE_ROWS[1:])
    assert main(["capsule", "check", str(moved), "--reference", str(ref)]) == 1
    assert "03/test_accuracy" in capsys.readouterr().err

    counts = _summary(tmp_path, "counts.csv", REFERENCE_ROWS[:2] + [("01", "duplicates_found", 121, "count", None),
                                                                      REFERENCE_ROWS[3]])
    result = capsule.check(counts, ref).set_index("quantity")
    assert not result.loc["duplicates_found", "ok"] and result["ok"].sum() == 3

    lr = _summary(tmp_path, "lr.csv", [REFERENCE_ROWS[0], ("03", "chosen_lr", 0.005, "setting", None)]
                  + REFERENCE_ROWS[2:])
    assert not capsule.check(lr, ref).set_index("quantity").loc["chosen_lr", "ok"]


def test_check_fails_when_a_number_is_missing_and_refuses_a_table_that_is_no_summary(tmp_path):
    ref = _summary(tmp_path, "ref.csv", REFERENCE_ROWS)
    partial = _summary(tmp_path, "partial.csv", REFERENCE_ROWS[1:])
    assert capsule.check(partial, ref).set_index("quantity").loc["test_accuracy", "ok"] == False  # noqa: E712
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not a capsule summary"):
        capsule.check(tmp_path / "other.csv", ref)
    with pytest.raises(UserError, match="does not exist"):
        capsule.check(tmp_path / "nowhere", ref)


def test_the_committed_reference_has_a_value_for_every_number_of_the_summary():
    ref = pd.read_csv(capsule.REFERENCE, dtype={"notebook": str})
    assert {(q.notebook, q.quantity) for q in capsule.QUANTITIES} == set(zip(ref["notebook"], ref["quantity"]))
    assert ref["value"].notna().all()
    assert set(ref["kind"]) <= set(capsule.KINDS)
    env = json.loads((capsule.REFERENCE.parent / capsule.ENVIRONMENT).read_text())
    assert env["packages"]["torch"] and env["cpu"] and env["git_commit"]


def test_environment_records_versions_machine_and_data_checksums(tmp_path):
    data = tmp_path / "data"
    (data / "binary" / "train").mkdir(parents=True)
    (data / "binary" / "train" / "a.png").write_bytes(b"one")
    (data / "binary" / ".complete").write_text("marker")
    env = capsule.environment(data, seed=3)
    assert env["seed"] == 3 and env["python"] and env["cpu_count"] >= 1 and "torch" in env["packages"]
    first = env["data_sha256"]["binary"]
    (data / "binary" / ".complete").write_text("another marker")  # build markers do not count
    assert capsule.data_checksums(data)["binary"] == first
    (data / "binary" / "train" / "a.png").write_bytes(b"two")
    assert capsule.data_checksums(data)["binary"] != first


def _tiny_notebooks(folder):
    """One numbered notebook with a parameters cell that writes a file into its output folder."""
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('output_dir = "out"\nseed = 0\nphotos_dir = "../data/photos"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from pathlib import Path\nPath(output_dir).mkdir(parents=True, exist_ok=True)\n"
        "(Path(output_dir) / 'seen.txt').write_text(f'{seed} {photos_dir}')")]
    nbformat.write(nb, folder / "00_tiny.ipynb")
    return folder


def test_run_writes_the_results_folder_and_never_mixes_runs(tmp_path, sample_data):
    folder = _tiny_notebooks(tmp_path / "notebooks")
    with pytest.raises(UserError, match="built with other settings"):
        capsule.run(tmp_path / "refused", data=sample_data["binary"].parent, folder=folder)  # a smaller build
    data = tmp_path / "elsewhere"  # not the notebooks' ../data: their data parameters are pointed here
    results = capsule.run(tmp_path / "results", data=data, seed=0, folder=folder)
    seen = (results / "notebooks" / "00_tiny" / "seen.txt").read_text()
    assert seen == f"0 {data / 'photos'}", "parameters pointing into ../data follow --data"
    env = json.loads((results / capsule.ENVIRONMENT).read_text())
    assert set(env["data_sha256"]) >= {"binary", "multiclass", "photos"}
    assert (results / capsule.SUMMARY).is_file() and (results / "notebooks" / "00_tiny.ipynb").is_file()

    with pytest.raises(UserError, match="--overwrite"):
        capsule.run(results, data=data, folder=folder)
    (results / "mine.txt").write_text("a researcher's own file")
    capsule.run(results, data=data, folder=folder, overwrite=True)
    assert (results / "mine.txt").read_text() == "a researcher's own file"

    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.docx").write_text("x")
    with pytest.raises(UserError, match="holds no earlier capsule run"):
        capsule.run(other, data=data, folder=folder, overwrite=True)
