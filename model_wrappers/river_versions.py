"""Which river versions seldon-river serves, and the install that serves each.

A model folder is served by the river minor version that wrote it (dill files do not load across
minor versions). Two installs cover the supported rivers:

- ``pip install seldon-river`` (Python 3.11 to 3.13): river 0.23 to 0.26, served by the project's
  own ``seldon-river-microservice``;
- ``pip install 'seldon-river[seldon-core]'`` (Python 3.11): river 0.23 only, since seldon-core
  1.17.1 pins numpy<2; it adds Seldon's stock ``seldon-core-microservice``.

Examples
--------
>>> install_for("0.26.1")
"pip install seldon-river 'river==0.26.*' (Python 3.11-3.13; served by seldon-river-microservice)"
>>> install_for("0.23.0")
"pip install 'seldon-river[seldon-core]' 'river==0.23.*' (Python 3.11; served by seldon-river-microservice or Seldon's seldon-core-microservice)"
>>> print(install_for("0.21.0"))
None

"""

from __future__ import annotations

# The newest river that installs beside seldon-core 1.17.1 (numpy<2).
STOCK_WRAPPER_RIVER = (0, 23)
SUPPORTED = ((0, 23), (0, 26))  # oldest and newest minor version served, as pyproject.toml pins


def minor(version: str) -> tuple[int, ...]:
    """``"0.26.1"`` as ``(0, 26)``; a version that does not read as numbers as ``()``."""
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return ()


def install_for(version: str) -> str | None:
    """The install that serves a folder written with river ``version``, or None when none does."""
    found = minor(version)
    if not SUPPORTED[0] <= found <= SUPPORTED[1] or len(found) != 2:
        return None
    pin = f"'river=={found[0]}.{found[1]}.*'"
    if found == STOCK_WRAPPER_RIVER:
        return (f"pip install 'seldon-river[seldon-core]' {pin} (Python 3.11; served by "
                "seldon-river-microservice or Seldon's seldon-core-microservice)")
    return f"pip install seldon-river {pin} (Python 3.11-3.13; served by seldon-river-microservice)"


def needed(version: str) -> str:
    """What serving a folder written with river ``version`` takes, in a sentence's end."""
    short = ".".join(version.split(".")[:2])
    install = install_for(version)
    if install is None:
        low, high = (".".join(map(str, v)) for v in SUPPORTED)
        return f"river {short}.x, which no seldon-river install serves (river {low} to {high} are served)"
    return f"river {short}.x: {install}"
