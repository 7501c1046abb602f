"""The lock, pyproject.toml, environment.yml and the Dockerfile must describe one environment."""

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _lock():
    """``{package name: version}`` pinned by pylock.toml."""
    data = tomllib.loads((ROOT / "pylock.toml").read_text())
    return {p["name"].lower().replace("_", "-"): p["version"] for p in data["packages"]}


def _requirements():
    """What pyproject.toml asks for: the core dependencies and every extra the lock covers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return [Requirement(r) for r in tool.requirements()]


def test_the_lock_satisfies_every_requirement_of_pyproject():
    lock = _lock()
    for req in _requirements():
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"pylock.toml lacks {req.name}: run `make lock`"
        assert req.specifier.contains(lock[name], prereleases=True), (
            f"pylock.toml pins {name} {lock[name]}, outside pyproject's {req}: run `make lock`")
        for extra in req.extras:  # e.g. ray[data], moto[server]: their own dependencies are locked too
            assert name in lock


def test_the_requirements_form_of_the_lock_pins_the_same_versions_and_hashes():
    import importlib.util

    spec = importlib.util.spec_from_file_location("lock_tool", ROOT / "tools" / "lock.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    lines = tool.as_requirements(ROOT / "pylock.toml").splitlines()
    data = tomllib.loads((ROOT / "pylock.toml").read_text())
    assert len(lines) == len(data["packages"])
    for line, package in zip(lines, data["packages"]):
        assert line.startswith(f"{package['name']}=={package['version']} --hash=sha256:")
        assert all(f["hashes"]["sha256"] in line for f in package.get("wheels", []))


def test_every_locked_file_is_a_pypi_url_with_a_sha256():
    data = tomllib.loads((ROOT / "pylock.toml").read_text())
    for package in data["packages"]:
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert files, f"{package['name']} has no file in the lock"
        for f in files:
            assert f["url"].startswith("https://files.pythonhosted.org/"), f"{f['name']} is not from PyPI"
            assert re.fullmatch(r"[0-9a-f]{64}", f["hashes"]["sha256"])


def test_the_lock_requires_a_torch_without_the_weights_only_flaw():
    assert tuple(int(x) for x in _lock()["torch"].split("+")[0].split(".")[:2]) >= (2, 6)


def test_environment_yml_installs_the_lock_and_nothing_else():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps, "the lock is for CPython 3.11"
    pip_lists = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip_lists == [["-r pylock.toml", "-e ."]]


def test_dockerfile_installs_the_lock_on_python_311():
    text = (ROOT / "environment" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[-\w.]*$", text, re.M), "the lock is for CPython 3.11"
    assert "COPY pylock.toml" in text and "-r pylock.toml" in text
    # Nothing else is installed with its own version: every package comes from the lock.
    installs = re.findall(r"pip install ([^\n\\&]+)", text)
    assert all(("-r pylock.toml" in i) or ("--no-deps" in i) or ('"pip>=' in i) for i in installs), installs
    assert "resnet18(weights=" in text, "the Dockerfile must fetch ResNet-18's ImageNet weights at build time"
    assert 'CMD ["./run"]' in text


def test_makefile_installs_the_lock_unless_asked_for_the_latest():
    text = (ROOT / "Makefile").read_text()
    install = text.split("$(VENV)/.installed:")[1].split("\n\n")[0]
    assert "tools/lock.py --requirements" in install and "--require-hashes --no-deps -r" in install
    assert "--no-deps -e ." in install
    assert "install-latest:" in text


def test_the_code_ocean_driver_writes_only_to_results():
    text = (ROOT / "run").read_text()
    assert "capsule run --results" in text and "../results" in text
    assert "pip install" not in text, "the driver installs nothing at run time"
