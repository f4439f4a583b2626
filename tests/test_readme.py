"""Every code block of README.md runs as written (see tests/readme_blocks.py for the rules)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

from readme_blocks import RUN_LANGUAGES, blocks
from support import REPO, require

README = REPO / "README.md"
TEXT = README.read_text()
TIMEOUT = 1800


def test_every_block_that_is_not_run_says_why_and_servers_say_when_they_are_up():
    found = blocks(TEXT)
    runnable = [b for b in found if b.language in RUN_LANGUAGES]
    assert sum(b.runs for b in runnable) >= 20, "most of the README's commands must run"
    for block in runnable:
        if block.marker:
            kind, value = block.marker
            assert value, f"{block.where()}: a {kind} marker needs a reason or URL"
            if kind == "background":
                assert re.match(r"http://127\.0\.0\.1:\d+/", value), f"{block.where()}: servers answer on 127.0.0.1"
    # A marker must sit right above a block: one that does not is a typo that would let a block run.
    markers = len(re.findall(r"^\s*<!--\s*(?:not-run|background):", TEXT, re.M))
    assert markers == sum(b.marker is not None for b in found)


def test_links_inside_the_readme_reach_a_heading():
    def slug(title: str) -> str:
        return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")

    text = re.sub(r"```.*?```", "", TEXT, flags=re.S)
    anchors = {slug(h) for h in re.findall(r"^#{1,6} (.*)$", text, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links and not [link for link in links if link not in anchors]


def test_the_readme_runs_as_written(tmp_path):
    """The blocks in order, in one folder, in a loopback-only network namespace (the ports the text names)."""
    require("unshare", shutil.which("unshare") is not None, "util-linux (scripts/setup-system.sh)")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "in-netns.sh"), sys.executable, str(REPO / "tests" / "readme_blocks.py"),
         str(README), str(tmp_path / "reader")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-3000:]
    assert "FAILED" not in done.stdout
