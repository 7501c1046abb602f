"""The notebooks' structure: numbered, one `parameters` cell first, every parameter visible to papermill.

nbval (run by the README's test command) re-executes them and compares outputs;
these checks are about what papermill and the notebook runner rely on.
"""

import ast
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from imgasdata.course import find_notebooks, parse_parameters

NOTEBOOKS = find_notebooks(Path(__file__).resolve().parents[1] / "notebooks")


def test_the_numbered_notebooks_are_there():
    assert [p.name.split("_")[0] for p in NOTEBOOKS] == ["00", "00b", "01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_first_and_fully_visible_to_papermill(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    assert code[0] is tagged[0], "the parameters cell must be the first code cell"
    assigned = {t.id for node in ast.parse(tagged[0].source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    # papermill skips a line it cannot parse (e.g. an '=' inside a comment) without failing,
    # and that parameter then silently ignores -p; every assigned name must be seen.
    seen = set(pm.inspect_notebook(str(path)))
    assert assigned == seen, f"papermill cannot see {sorted(assigned - seen)}"
    assert "output_dir" in seen and "seed" in seen


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs_and_no_errors(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "run every cell before committing"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)


def test_parse_parameters_reads_yaml_values_and_resolves_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text("epochs: 3\nlearning_rates: [0.001, 0.01]\n")
    params = parse_parameters([("mode", "full"), ("data_dir", "my_images"), ("epochs", "5")], "p.yaml")
    assert params["epochs"] == 5 and params["learning_rates"] == [0.001, 0.01] and params["mode"] == "full"
    assert params["data_dir"] == str(tmp_path / "my_images")


def test_unknown_notebook_number_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="No notebook numbered '42'"):
        find_notebooks(NOTEBOOKS[0].parent, ["42"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_have_executed_solutions_that_show_collapsed(path):
    """Every notebook has questions before running and at least three exercises, each followed by
    its solution: a code cell tagged 'solution', run by the headless runs (so it stays correct)
    but collapsed in JupyterLab."""
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    assert any("Before you run" in c.source for c in cells if c.cell_type == "markdown"), "no questions first"
    exercises = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and "### Exercise" in c.source]
    assert len(exercises) >= 3
    for i in exercises:
        solution = next(c for c in cells[i + 1:] if c.cell_type == "code")
        assert "solution" in solution.metadata.get("tags", []), cells[i].source.splitlines()[0]
        assert solution.metadata.get("jupyter", {}).get("source_hidden") is True
        assert solution.source.startswith("# Solution") and solution.execution_count is not None
