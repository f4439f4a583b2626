"""The MLServer baseline's own virtual environment (MLServer's pins clash with seldon-core's).

It lives outside the clone, under ``${SELDON_RIVER_CACHE:-~/.cache/seldon-river}/venvs``, and is
built once from ``mlserver-constraints.txt``: mlserver 1.7.1 with the numpy, river and dill
versions of the project's environment, so the model folder's ``model.dill`` loads there too.
"""

from __future__ import annotations

from pathlib import Path

from .. import venvs

MLSERVER_VERSION = "1.7.1"
CONSTRAINTS = Path(__file__).resolve().parent / "mlserver-constraints.txt"


def ensure(log=print) -> Path:
    """The venv's folder, created and installed on first use; later calls only check a stamp."""
    return venvs.ensure(f"mlserver-{MLSERVER_VERSION}", [f"mlserver=={MLSERVER_VERSION}", *venvs.model_pins()],
                        CONSTRAINTS, log=log)


if __name__ == "__main__":
    print(ensure())
