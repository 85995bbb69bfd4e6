"""Runs a notebook top to bottom in a fresh kernel and writes it back with its outputs.

    .venv/bin/python notebooks/execute.py notebooks/tour.ipynb      (make notebook)

The kernel is this Python's own (the project's .venv), started in the notebook's
directory. Keras's progress bar redraws its line with carriage returns; stream
outputs are coalesced so the stored notebook keeps each bar's final state, not
every redraw. The file is replaced atomically and only if every cell ran. (kerasnets
is not imported here: the kernel inherits this process's environment.)
"""

from __future__ import annotations

import os
import sys
import tempfile

import nbformat
from nbclient import NotebookClient


def execute(path: str, timeout: int = 1200) -> nbformat.NotebookNode:
    """Executes the notebook at `path` and returns it with outputs (the file is not changed)."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", coalesce_streams=True,
                   resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}}
                   ).execute()
    return notebook


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].endswith(".ipynb") or not os.path.isfile(argv[1]):
        print("usage: python notebooks/execute.py NOTEBOOK.ipynb (an existing notebook)",
              file=sys.stderr)
        return 2
    notebook = execute(argv[1])
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=os.path.dirname(os.path.abspath(argv[1])))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(notebook, f)
        os.chmod(tmp, os.stat(argv[1]).st_mode)
        os.replace(tmp, argv[1])
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"executed {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
