"""pyproject.toml, environment.yml and the Dockerfile must ask for the same packages."""

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirements):
    return {re.sub(r"\s+", "", r).lower().replace("_", "-") for r in requirements}


def _pyproject():
    """``(core dependencies, test tools + the optional extras the notebooks use)``."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = data["project"]["optional-dependencies"]
    used = {r for name in ("test", "aws", "faces", "ocr", "ray") for r in extras[name]}
    return _normalise(data["project"]["dependencies"]), _normalise(used)


def test_environment_yml_matches_pyproject():
    deps, test_deps = _pyproject()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml needs exactly one pip: section"
    listed = _normalise(r for r in pip_lists[0] if not r.startswith("-e"))
    assert deps <= listed, f"missing from environment.yml: {sorted(deps - listed)}"
    assert test_deps <= listed, f"test tools or extras missing from environment.yml: {sorted(test_deps - listed)}"
    lab = _normalise(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["lab"])
    extra = listed - deps - test_deps - lab
    assert not extra, f"environment.yml asks for packages pyproject.toml does not: {sorted(extra)}"
    assert "-e ." in pip_lists[0], "environment.yml must install the package itself"


def test_dockerfile_matches_pyproject():
    deps, test_deps = _pyproject()
    text = (ROOT / "Dockerfile").read_text()
    quoted = _normalise(re.findall(r'"([A-Za-z0-9_.\-\[\]]+[<>=!~][^"]+)"', text))
    assert quoted == deps | test_deps, (
        f"Dockerfile and pyproject.toml differ: only in Dockerfile {sorted(quoted - deps - test_deps)}, "
        f"only in pyproject {sorted((deps | test_deps) - quoted)}")
    assert "resnet18(weights=" in text, "the Dockerfile must fetch ResNet-18's ImageNet weights at build time"
    assert 'CMD ["imgasdata", "notebooks", "--out", "/outputs"]' in text
