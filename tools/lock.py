"""Write pylock.toml: exact versions and hashes of every package the notebooks and tests use.

    make lock            (or: .venv/bin/python tools/lock.py)

The lock is made by pip itself (``pip lock``, PEP 751, pip >= 25.1) from the ranges in
pyproject.toml: the core dependencies plus the extras the notebooks, tests and JupyterLab
use. pip resolves for the Python and platform it runs on, so run it with CPython 3.11 on
Linux x86-64, the platform the lock is for. ``--isolated`` keeps local pip settings (a
private mirror, find-links folders) out of the lock: every file in it is a PyPI URL with
its SHA-256. ``tools/lock-constraints.txt`` caps the PyTorch releases at the newest ones
this project's tests have run on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The extras locked with the core dependencies (all of them but nothing dev-only is left out).
EXTRAS = ("aws", "faces", "ocr", "ray", "test", "lab")


def requirements():
    """The requirement strings the lock must satisfy, from pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    out = list(project["dependencies"])
    for name in EXTRAS:
        out += [r for r in extras[name] if not r.startswith("imgasdata")]
    return out


def as_requirements(lock_file):
    """The lock as a hashed requirements file: ``name==version --hash=sha256:...`` per package.

    The same pins and hashes as pylock.toml, in the format every pip reads with
    ``--require-hashes``. ``make install`` uses it because pip then takes each file from
    wherever it is configured to look (a mirror, a wheel cache) and checks its hash,
    while ``-r pylock.toml`` always fetches the URL written in the lock.
    """
    data = tomllib.loads(Path(lock_file).read_text())
    lines = []
    for package in data["packages"]:
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        hashes = " ".join(f"--hash=sha256:{f['hashes']['sha256']}" for f in files)
        lines.append(f"{package['name']}=={package['version']} {hashes}")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", metavar="FILE",
                        help="instead of locking, write pylock.toml as a hashed requirements FILE")
    args = parser.parse_args()
    if args.requirements:
        Path(args.requirements).write_text(as_requirements(ROOT / "pylock.toml"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.in"
        req.write_text("\n".join(requirements()) + "\n")
        out = ROOT / "pylock.toml"
        cmd = [sys.executable, "-m", "pip", "lock", "--isolated", "-c", str(ROOT / "tools" / "lock-constraints.txt"),
               "-r", str(req), "-o", str(out)]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=tmp)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
