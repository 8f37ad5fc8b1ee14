"""The teaching notebooks in notebooks/ run top to bottom, offline, and still say what they teach.

They only read the shipped captures, so they need no daemon; but they call docktap's Python API,
its timeline and its audit, and a change to any of those could break them silently. Each one is
executed here with nbclient in a kernel of this very interpreter, and a few things a learner is
meant to see are looked for in the outputs.
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from docktap import load
from docktap.render.web import page

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# A name no Jupyter installation uses: a `python3` kernel spec elsewhere on the machine (a
# user's or the system's) would otherwise be picked over this interpreter and might not have
# docktap at all.
KERNEL_NAME = "docktap-tests-python"

# Text each notebook must show, per notebook file stem.
EXPECTED: dict[str, list[str]] = {
    "what-docker-run-says": [
        # the hand decoding of the two 8-byte frame headers
        "header 01 00 00 00 00 00 00 04: stream 1 (stdout), 4 bytes -> b'out\\n'",
        "header 02 00 00 00 00 00 00 04: stream 2 (stderr), 4 bytes -> b'err\\n'",
        # docktap's decoder agrees, and the timeline shows the output and the exit status
        "stdout: b'out\\n'  stderr: b'err\\n'",
        "stderr> err",
        "exit status 3",
        "101 UPGRADED",
        "the daemon speaks API 1.41",
    ],
    "docker-sock-is-root": [
        "Docker socket mounted into the container",
        "CRITICAL  docker-socket-mount (CIS 5.31)",
        "exit status: 1",
        "privileged",
        "host-root-mount",
        "from-a-sibling",
    ],
}


# The capture whose web page each notebook embeds, per notebook file stem.
PAGES = {"what-docker-run-says": "run.jsonl", "docker-sock-is-root": "socket-mount.jsonl"}
_SRCDOC = re.compile(r'<iframe srcdoc="([^"]*)"')


def embedded_pages(notebook: Any) -> list[str]:
    """The pages the notebook's outputs embed in an iframe, as the browser would read them."""
    pages: list[str] = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            markup = output.get("data", {}).get("text/html", "")
            pages += [html.unescape(found) for found in _SRCDOC.findall(markup)]
    return pages


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory) -> KernelSpecManager:
    """A kernel spec, in a private folder, that starts an IPython kernel with sys.executable."""
    folder = tmp_path_factory.mktemp("jupyter")
    spec_dir = folder / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            # No history database in the user's home from a test run.
            "--HistoryManager.hist_file=:memory:",
        ],
        "display_name": "docktap tests",
        "language": "python",
        # IPython's profile folder too: kept out of the home directory.
        "env": {"IPYTHONDIR": str(folder / "ipython")},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(folder / "kernels")])


def read(path: Path, as_version: object) -> Any:
    """The notebook at `path` (nbformat's own reader has no type hints)."""
    return nbformat.read(path, as_version=as_version)  # type: ignore[no-untyped-call]


def output_text(notebook: Any) -> str:
    """All the text a reader sees under the code cells: streams and plain-text renderings."""
    parts: list[str] = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        stream = None  # the stream of the previous output, if it was one
        for output in cell.outputs:
            if output.output_type == "stream":
                # One print can arrive as several outputs of its stream (the kernel flushes on
                # a timer, so a busy machine splits lines): they read as one text.
                if output.name == stream:
                    parts[-1] += output.text
                else:
                    parts.append(output.text)
                stream = output.name
                continue
            stream = None
            if output.output_type in ("display_data", "execute_result"):
                parts.append(output.data.get("text/plain", ""))
    return "\n".join(parts)


def test_there_are_notebooks() -> None:
    assert {path.stem for path in NOTEBOOKS} >= set(EXPECTED) | set(PAGES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path) -> None:
    """Valid nbformat 4, and no outputs: the notebooks are read as source, in diffs too."""
    notebook = read(path, nbformat.NO_CONVERT)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {cell.id} has outputs"
            assert cell.execution_count is None, f"{path.name}: cell {cell.id} was run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(
    path: Path,
    kernel_specs: KernelSpecManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The kernel's connection file goes to a folder of this test, not to the home directory.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    notebook = read(path, 4)
    # One more cell, run last: proof that the kernel was this interpreter, with its docktap.
    check = "import sys\nprint('kernel python:', sys.executable)"
    notebook.cells.append(nbformat.v4.new_code_cell(check))  # type: ignore[no-untyped-call]
    manager = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=kernel_specs)
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=120,
        # Run from the notebook's own folder, as Jupyter does when a learner opens it.
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    text = output_text(notebook)
    assert f"kernel python: {sys.executable}" in text
    missing = [expected for expected in EXPECTED.get(path.stem, []) if expected not in text]
    assert not missing, f"{path.name}: not in the outputs: {missing}\n--- outputs ---\n{text}"
    if path.stem in PAGES:
        name = PAGES[path.stem]
        capture = load(path.parent.parent / "captures" / name)
        assert embedded_pages(notebook) == [page(capture, name)]
