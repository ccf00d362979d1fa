"""The tutorials run, top to bottom, in a fresh kernel, and their saved outputs are current.

Each notebook checks its own claims with `assert`s next to the plots that show them, so a
change in minigrad that makes the prose wrong fails here. Needs the `tutorials` extra
(nbclient, nbformat, ipykernel; `pip install -e ".[dev]"` has it).
"""
import pytest

nbformat = pytest.importorskip("nbformat", reason='needs the tutorials extra: pip install -e ".[tutorials]"')
pytest.importorskip("nbclient", reason='needs the tutorials extra: pip install -e ".[tutorials]"')
pytest.importorskip("ipykernel", reason='needs the tutorials extra: pip install -e ".[tutorials]"')

from tutorials import execute  # noqa: E402

EXPECTED = ["1-autodiff-from-scratch", "2-unrolling-an-rnn", "3-truncated-bptt",
            "4-unfold-and-average", "5-a-cuda-kernel", "6-a-character-language-model"]
MAX_KIB = 400  # a saved notebook, figures included: small enough to read well on the web


def test_the_tutorials_are_there_in_order():
    assert [p.stem for p in execute.NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", execute.NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_outputs_come_from_the_current_cells(path):
    nb = nbformat.read(path, as_version=4)
    saved = nb.metadata.get("minigrad", {}).get("fingerprint")
    assert saved == execute.fingerprint(nb), (
        f"{path.name} was edited after its outputs were saved: run python tutorials/execute.py "
        f"{path.stem}")
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), \
        f"{path.name}: its cells were not saved from one run, top to bottom"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was saved with an error: {errors[0].ename}: {errors[0].evalue}"
    assert path.stat().st_size < MAX_KIB * 1024, \
        f"{path.name} is {path.stat().st_size / 1024:.0f} KiB, more than {MAX_KIB}: smaller figures"


@pytest.mark.parametrize("path", execute.NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path):
    nb, seconds = execute.execute(path)  # a cell that raises (an assert included) fails here
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code)
    print(f"{path.name}: {seconds:.1f} s")


def test_the_readme_links_them_in_order():
    readme = (execute.HERE.parent / "README.md").read_text()
    links = [readme.find(f"](tutorials/{name}.ipynb)") for name in EXPECTED]
    assert all(at >= 0 for at in links), "README.md must link every notebook"
    assert links == sorted(links), "README.md must link the notebooks in order"


def test_execute_names_a_missing_notebook_in_one_line(capsys):
    assert execute.main(["9-no-such-notebook"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "9-no-such-notebook.ipynb" in err
