"""The MLServer baseline's own virtual environment (MLServer's pins clash with seldon-core's).

It lives outside the clone, under ``${SELDON_RIVER_CACHE:-~/.cache/seldon-river}/venvs``, and is
built once from ``mlserver-constraints.txt``: mlserver 1.7.1 with the numpy, river and dill
versions of the project's environment, so the model folder's ``model.dill`` loads there too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

MLSERVER_VERSION = "1.7.1"
HERE = Path(__file__).resolve().parent
CONSTRAINTS = HERE / "mlserver-constraints.txt"


def cache_dir() -> Path:
    return Path(os.environ.get("SELDON_RIVER_CACHE") or Path.home() / ".cache" / "seldon-river")


def requirements() -> list[str]:
    """What the runtime imports, pinned to the versions running here."""
    import dill
    import numpy
    import river

    return [f"mlserver=={MLSERVER_VERSION}", f"river=={river.__version__}", f"dill=={dill.__version__}",
            f"numpy=={numpy.__version__}"]


def venv_dir() -> Path:
    return cache_dir() / "venvs" / f"mlserver-{MLSERVER_VERSION}"


def ensure(log=print) -> Path:
    """The venv's folder, created and installed on first use; later calls only check a stamp."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    stamp = venv / "seldon-river-stamp.json"
    wanted = {"requirements": requirements(), "constraints": CONSTRAINTS.read_text(),
              "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    if stamp.is_file() and python.is_file():
        try:
            if json.loads(stamp.read_text()) == wanted:
                return venv
        except ValueError:
            pass
    log(f"installing MLServer {MLSERVER_VERSION} into {venv} (once)")
    if not python.is_file():
        # sys.executable may itself be a venv's python; venv then builds on its base interpreter.
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip>=23"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*pip, "-c", str(CONSTRAINTS), *wanted["requirements"]], check=True)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"MLServer venv {venv} has broken requirements:\n{check.stdout}{check.stderr}")
    stamp.write_text(json.dumps(wanted))
    return venv


def version_of(venv: Path, package: str) -> str | None:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          f"import importlib.metadata as m; print(m.version({package!r}))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


if __name__ == "__main__":
    print(ensure())
