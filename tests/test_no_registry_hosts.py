"""No package-registry or mirror host is written into the project: scripts take them from the machine."""

from __future__ import annotations

import os
import re
import subprocess

from support import REPO

# Hosts a file may name: loopback, the cluster's own API service, a JSON Schema's $schema id,
# names reserved for examples (RFC 2606), and the documentation the README links to.
ALLOWED = {"127.0.0.1", "localhost", "kubernetes.default.svc.cluster.local", "json-schema.org"}
DOCUMENTATION = {"docs.seldon.io", "riverml.xyz"}
URL = re.compile(r"\bhttps?://([A-Za-z0-9.-]+)")


def project_files():
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") or d == ".ci"]
        dirs[:] = [d for d in dirs if d not in ("__pycache__", "node_modules") and not d.endswith(".egg-info")]
        for name in files:
            yield os.path.join(root, name)


def test_no_file_names_a_registry_or_mirror_host():
    found = []
    for path in project_files():
        try:
            text = open(path, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        allowed = ALLOWED | (DOCUMENTATION if os.path.basename(path) == "README.md" else set())
        for match in URL.finditer(text):
            host = match.group(1).rstrip(".")
            if "." not in host and host != "localhost":
                continue  # not a host name (e.g. a pattern such as http://127\.0\.0\.1 in a regex)
            if host not in allowed and not host.endswith(".example"):
                found.append(f"{os.path.relpath(path, REPO)}: {match.group(0)}")
    assert not found, "hosts written into the project:\n" + "\n".join(found)


def apt_mirror(etc, suite="bookworm"):
    return subprocess.run(["bash", str(REPO / "scripts" / "apt-mirror.sh"), suite], capture_output=True,
                          text=True, env={**os.environ, "APT_ETC": str(etc)}, timeout=30, check=True).stdout.strip()


def test_debian_mirror_comes_from_the_machines_apt_sources(tmp_path):
    listd = tmp_path / "sources.list.d"
    listd.mkdir()
    (listd / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert apt_mirror(tmp_path) == "http://mirror.example/debian"
    assert apt_mirror(tmp_path, "bookworm-security") == "http://mirror.example/debian-security"
    assert apt_mirror(tmp_path, "trixie") == ""
    # Disabled stanzas and source-only lines are skipped; the one-line form is read too.
    (listd / "debian.sources").write_text("Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\n"
                                          "Enabled: no\n")
    (tmp_path / "sources.list").write_text(
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://one.example/debian bookworm main\n"
    )
    assert apt_mirror(tmp_path) == "http://one.example/debian"
