"""Reading manifest files: the part ``seldon-river deploy`` and ``seldon-river run`` share.

A manifest is a multi-document YAML file of Kubernetes objects. :func:`read_documents` reads
one into its documents (:func:`parse_documents` does the same for YAML text, e.g. what ``helm
template`` printed) and :class:`ManifestError` is what both commands raise when a manifest
cannot be used; :mod:`model_wrappers.deploy.manifest` and :mod:`model_wrappers.local.manifest`
make their own sense of the documents.

Examples
--------
>>> import pathlib, tempfile
>>> path = pathlib.Path(tempfile.mkdtemp()) / "sd.yaml"
>>> _ = path.write_text("kind: Secret\\n---\\n---\\nkind: [unclosed\\n")
>>> read_documents(path)
Traceback (most recent call last):
...
model_wrappers.manifest_files.ManifestError: ... is not valid YAML at line 5: expected ',' or ']', but got '<stream end>'
>>> _ = path.write_text("apiVersion: machinelearning.seldon.io/v1\\nkind: SeldonDeployment\\n---\\n")
>>> [is_seldon_deployment(doc) for doc in read_documents(path)]
[True]

"""

from __future__ import annotations

from pathlib import Path

import yaml

SELDON_GROUP = "machinelearning.seldon.io"


class ManifestError(Exception):
    """A manifest cannot be read, deployed or run; the message says what was expected and what came."""


def read_documents(path: str | Path) -> list:
    """The YAML documents of the file ``path`` in file order, empty documents left out.

    Raises
    ------
    ManifestError
        The file cannot be read, is not UTF-8 text, or is not valid YAML (see :func:`parse_documents`).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"cannot read {path}: expected UTF-8 text, got byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
        ) from None
    return parse_documents(text, str(path))


def parse_documents(text: str, source: str) -> list:
    """The YAML documents of ``text`` in order, empty documents left out.

    Parameters
    ----------
    text
        Multi-document YAML.
    source
        Where ``text`` came from, as error messages name it.

    Raises
    ------
    ManifestError
        ``text`` is not valid YAML; the message gives the line and the problem.
    """
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        # Errors without a mark (e.g. a control character) carry no ``problem``; their text says it all.
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(f"{source} is not valid YAML{where}: {problem}") from None


def is_seldon_deployment(doc) -> bool:
    """Whether a YAML document is a SeldonDeployment of any served version."""
    return (
        isinstance(doc, dict)
        and doc.get("kind") == "SeldonDeployment"
        and str(doc.get("apiVersion", "")).startswith(SELDON_GROUP + "/")
    )
