"""Virtual environments the benchmarks serve from, built once outside the clone.

They live under ``${SELDON_RIVER_CACHE:-~/.cache/seldon-river}/venvs`` and carry a stamp of
what they were installed from; a later call only compares the stamp. Each pins the numpy,
river and dill of the running environment, so the one model folder loads in all of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    return Path(os.environ.get("SELDON_RIVER_CACHE") or Path.home() / ".cache" / "seldon-river")


def model_pins() -> list[str]:
    """What a served ``model.dill`` needs, at the versions running here."""
    import dill
    import numpy
    import river

    return [f"river=={river.__version__}", f"dill=={dill.__version__}", f"numpy=={numpy.__version__}"]


def ensure(name: str, requirements: list[str], constraints: Path | None = None, note: str = "",
           log=print) -> Path:
    """The venv ``name``, installed on first use and again when what it is made of changes.

    ``note`` goes into the stamp beside the requirements (e.g. a digest of what an editable
    install reads).
    """
    venv = cache_dir() / "venvs" / name
    python = venv / "bin" / "python"
    stamp = venv / "seldon-river-stamp.json"
    wanted = {"requirements": requirements, "constraints": constraints.read_text() if constraints else "",
              "note": note, "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    if stamp.is_file() and python.is_file():
        try:
            if json.loads(stamp.read_text()) == wanted:
                return venv
        except ValueError:
            pass
    log(f"installing {name} into {venv} (once)")
    if not python.is_file():
        # sys.executable may itself be a venv's python; venv then builds on its base interpreter.
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip>=23"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*pip, *(["-c", str(constraints)] if constraints else []), *requirements], check=True)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"venv {venv} has broken requirements:\n{check.stdout}{check.stderr}")
    stamp.write_text(json.dumps(wanted))
    return venv


def ensure_project_server(log=print) -> Path:
    """The project as ``pip install seldon-river`` installs it, without the seldon-core extra.

    That extra pins protobuf 3.20, which has no compiled implementation for Python 3.11, so
    under it the server's gRPC path would run pure-Python messages; the image installs the
    project without it too. The clone is installed editable, so the venv serves this tree.
    """
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    return ensure("seldon-river-server", [*model_pins(), "-e", str(REPO)], note=f"pyproject.toml sha256 {digest}",
                  log=log)


def version_of(venv: Path, package: str) -> str | None:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          f"import importlib.metadata as m; print(m.version({package!r}))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None
