"""The README's code blocks, read and run as a reader would: in order, in one folder.

Every ``python``, ``sh`` and ``bash`` block runs, unless an HTML comment right above it says
otherwise:

- ``<!-- not-run: REASON -->``: the block is not run (it needs a cluster, root, a registry...);
  the reason is required.
- ``<!-- background: URL -->``: the block starts a server; it runs in the background until URL
  answers 200, and is stopped when the next ``##`` section begins (or at the end).

Python blocks run as scripts with the interpreter running this module; shell blocks with
``bash -euo pipefail``. The folder holds ``.venv`` (this interpreter's environment) and the
repository's ``manifests``, so commands run as from a clone. Run as a script
(``python readme_blocks.py README.md FOLDER``), it runs every block and exits 1 at the first
that fails, printing which and its output.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RUN_LANGUAGES = {"python": "python", "sh": "bash", "bash": "bash"}
MARKER = re.compile(r"<!--\s*(not-run|background):\s*(.*?)\s*-->")  # alone on its line
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
BLOCK_TIMEOUT = 600.0
READY_TIMEOUT = 120.0
LINKED = ("manifests",)


@dataclasses.dataclass
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    section: str  # the ``##`` heading it is under
    marker: tuple[str, str] | None = None  # (kind, value)

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and (self.marker is None or self.marker[0] != "not-run")

    def where(self) -> str:
        return f"README.md:{self.line} ({self.section})"


def blocks(text: str) -> list[Block]:
    """Every fenced block of ``text``, with the marker of the comment just above it (blank lines allowed)."""
    out, section, pending = [], "", None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section, pending = line[3:].strip(), None
        found = MARKER.fullmatch(line.strip())
        if found:
            pending = (found.group(1), found.group(2))
        fence = FENCE.match(line)
        if fence:
            indent, language, start = fence.group(1), fence.group(2).lower(), i + 1
            body, i = [], i + 1
            while i < len(lines) and not FENCE.match(lines[i]):
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            out.append(Block(start, language, "\n".join(body) + "\n", section, pending))
            pending = None
        elif line.strip() and not found:
            pending = None
        i += 1
    return out


def prepare(folder: Path, repo: Path) -> dict:
    """The folder blocks run in, and their environment."""
    folder.mkdir(parents=True, exist_ok=True)
    venv = folder / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.prefix))
    for name in LINKED:
        if not (folder / name).exists():
            (folder / name).symlink_to(repo / name)
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1"}


def command(block: Block, folder: Path, index: int) -> list[str]:
    if RUN_LANGUAGES[block.language] == "python":
        script = folder / f".readme-block-{index}.py"
        script.write_text(block.code)
        return [sys.executable, str(script)]
    return ["bash", "-euo", "pipefail", "-c", block.code]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    procs.clear()


def run_all(readme: Path, folder: Path) -> int:
    repo = readme.resolve().parent
    env = prepare(folder, repo)
    background: list[subprocess.Popen] = []
    section = None
    try:
        for index, block in enumerate(blocks(readme.read_text())):
            if block.section != section:
                stop(background)
                section = block.section
            if not block.runs:
                continue
            print(f"--- {block.where()}", flush=True)
            started = time.monotonic()
            if block.marker and block.marker[0] == "background":
                log = folder / f".readme-block-{index}.log"
                with open(log, "wb") as out:
                    proc = subprocess.Popen(command(block, folder, index), cwd=folder, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
                background.append(proc)
                while not answers(block.marker[1]):
                    if proc.poll() is not None or time.monotonic() - started > READY_TIMEOUT:
                        print(f"FAILED {block.where()}: {block.marker[1]} never answered\n{log.read_text()[-4000:]}")
                        return 1
                    time.sleep(0.3)
                continue
            try:
                done = subprocess.run(command(block, folder, index), cwd=folder, env=env, capture_output=True,
                                      text=True, timeout=BLOCK_TIMEOUT, start_new_session=True)
            except subprocess.TimeoutExpired:
                print(f"FAILED {block.where()}: still running after {BLOCK_TIMEOUT:.0f} s")
                return 1
            if done.returncode != 0:
                print(f"FAILED {block.where()} with exit status {done.returncode}:\n{block.code}\n"
                      f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")
                return 1
            print(f"ok in {time.monotonic() - started:.1f} s: {done.stdout[-300:].strip()}", flush=True)
    finally:
        stop(background)
    return 0


if __name__ == "__main__":
    sys.exit(run_all(Path(sys.argv[1]), Path(sys.argv[2])))
