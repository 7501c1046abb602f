"""Running the numbered notebooks headless with papermill.

Used by ``imgasdata notebooks`` and the README's main command: every notebook
runs on the bundled sample data (or with the parameters given) into an output
folder holding the executed notebook plus the tables and figures it wrote.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import MissingFileError, SettingsError, UserError


class NotebookFailed(UserError, RuntimeError):
    """A notebook stopped with an error; the message names the notebook, the cell and the error."""

#: A numbered notebook: two digits, an optional letter for a notebook inserted between
#: two numbers (``00b_under_the_hood.ipynb`` comes after 00 and before 01), then ``_name``.
NOTEBOOK_PATTERN = re.compile(r"^(\d\d[a-z]?)_.+\.ipynb$")
#: Parameters holding paths: relative values are read from where the command runs.
_PATH_SUFFIXES = ("_dir", "_path", "_csv", "run")


def find_notebooks(folder="notebooks", selection=()):
    """The numbered notebooks in ``folder`` (``00_...ipynb``, ``00b_...ipynb``), all or those selected.

    A selection item is a path to a notebook, a number (``3`` or ``03``: the notebook
    numbered 03, not 03b) or a number with its letter (``00b``).
    """
    folder = Path(folder)
    numbered = sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name))
    if not selection:
        if not numbered:
            raise MissingFileError(f"No numbered notebooks (like 00_name.ipynb) in {folder}")
        return numbered
    chosen = []
    for item in selection:
        path = Path(item)
        if path.suffix == ".ipynb":
            if not path.is_file():
                raise MissingFileError(f"Notebook not found: {path}")
            chosen.append(path)
            continue
        key = _selection_key(item)
        hits = [p for p in numbered if key and NOTEBOOK_PATTERN.match(p.name).group(1) == key]
        if not hits:
            raise MissingFileError(f"No notebook numbered {item!r} in {folder}")
        chosen += hits
    return chosen


def _selection_key(item):
    """'3' -> '03', '00b' -> '00b', anything else -> None."""
    match = re.fullmatch(r"(\d+)([a-z]?)", str(item).strip().lower())
    return f"{int(match.group(1)):02d}{match.group(2)}" if match else None


def parse_parameters(pairs=(), file=None):
    """Parameters from a YAML file and ``NAME VALUE`` pairs (values read as YAML: 5, 0.1, true, [1, 4])."""
    params = {}
    if file:
        loaded = yaml.safe_load(Path(file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise SettingsError(f"{file} must hold a mapping of parameter names to values")
        params.update(loaded)
    for name, value in pairs:
        params[name] = yaml.safe_load(value)
    for name, value in params.items():
        if isinstance(value, str) and name.endswith(_PATH_SUFFIXES) and not Path(value).is_absolute():
            params[name] = str(Path(value).resolve())
    return params


def run_notebooks(selection=(), out="outputs", parameters=None, folder="notebooks", kernel=None,
                  progress=True):
    """Execute notebooks with papermill into ``out``; returns the executed notebooks' paths.

    Each notebook gets ``output_dir = out/<notebook name>`` plus those of
    ``parameters`` that its ``parameters`` cell declares. A failing cell stops
    the run with a :class:`NotebookFailed` error naming the notebook, the cell and the error;
    the partly executed notebook is kept in ``out`` for a look. An ``out`` that is, or lies
    inside, the notebooks' folder is refused.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from .outputs import refuse_inside

    notebooks = find_notebooks(folder, selection)
    # an executed copy in the notebooks' own folder would replace the notebook itself
    refuse_inside(out, [folder, *{nb.parent for nb in notebooks}])
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for nb in notebooks:
        declared = pm.inspect_notebook(str(nb))
        params = {k: v for k, v in (parameters or {}).items() if k in declared}
        ignored = sorted(set(parameters or {}) - set(declared))
        if ignored:
            print(f"{nb.name} has no parameter(s) {', '.join(ignored)}; not passed to it", flush=True)
        if "output_dir" in declared:
            params.setdefault("output_dir", str(out / nb.stem))
        target = out / nb.name
        print(f"running {nb.name} -> {target}", flush=True)
        try:
            pm.execute_notebook(str(nb), str(target), parameters=params, cwd=str(nb.parent.resolve()),
                                kernel_name=kernel, progress_bar=progress)
        except PapermillExecutionError as exc:
            raise NotebookFailed(
                f"{nb.name} failed in code cell {exc.exec_count} (cell index {exc.cell_index}): "
                f"{exc.ename}: {exc.evalue}. The notebook as far as it ran is at {target}"
            ) from None
        done.append(target)
    return done
