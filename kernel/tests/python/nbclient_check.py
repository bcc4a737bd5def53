"""Runs notebooks under the `conclab` kernel with nbclient, as nbconvert, papermill and
nbgrader do, and prints one JSON line per notebook: whether nbclient raised, and on
which cell. Called by kernel/tests/nbclient.rs, which checks the lines."""

import json
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

LOAD = ':dep conclab = { path = "%s" }\nuse conclab::prelude::*;'


def notebook(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "conclab", "display_name": "Rust (conclab)", "language": "rust"}
    return nb


def run(name, cells, cwd):
    nb = notebook(cells)
    client = NotebookClient(nb, kernel_name="conclab", timeout=120, startup_timeout=180,
                            allow_errors=False, resources={"metadata": {"path": cwd}})
    result = {"name": name, "raised": False}
    try:
        client.execute()
    except CellExecutionError as error:
        text = str(error)
        failing = [i for i, cell in enumerate(nb.cells)
                   if any(o.get("output_type") == "error" for o in cell.get("outputs", []))]
        result.update(raised=True, ename=error.ename, evalue=error.evalue,
                      cell=failing[0] if failing else None, message=text[:2000])
    print(json.dumps(result), flush=True)


def main():
    repo, cwd = sys.argv[1], sys.argv[2]
    load = LOAD % repo
    run("clean", [load, "let x = 2;", "println!(\"{}\", x * 21);"], cwd)
    run("assert", [load, "let x = 2;", "assert_eq!(x, 3, \"x is two\");", "println!(\"after\");"], cwd)
    run("question_mark", [load, "let n: i32 = \"4x\".parse()?;"], cwd)
    run("compile_error", [load, "let s: i32 = \"text\";"], cwd)


if __name__ == "__main__":
    main()
