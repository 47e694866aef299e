"""The lesson notebook runs top to bottom, offline, and its committed outputs are fresh.

It is committed *with* its outputs so that a code host shows its pictures; this test
re-executes it (a cell that raises fails the test) and checks that the fresh outputs have
the committed ones' structure: the same cells, and in every code cell the same kinds of
output in the same order, pictures where pictures are. MNIST is not reachable here, so the
notebook says so and reads a small stand-in this test writes, through the same loader."""

import os

import pytest
from conftest import REPO
from test_mnist import _write_mnist

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

PATH = os.path.join(REPO, "scripts", "notebooks", "lesson.ipynb")


def _shape(nb):
    out = []
    for cell in nb.cells:
        kinds = []
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            kinds.append((o.output_type, "image/png" in data, o.get("name")))
        out.append((cell.cell_type, tuple(kinds)))
    return out


def _set_env(env: dict) -> None:
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _execute(env: dict) -> "nbformat.NotebookNode":
    """Runs the notebook top to bottom with ``env`` (a value None unsets the variable)."""
    old = {k: os.environ.get(k) for k in env}
    _set_env(env)
    try:
        nb = nbformat.read(PATH, as_version=4)
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={
            "metadata": {"path": os.path.dirname(PATH)}}).execute()
    finally:
        _set_env(old)
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nb")
    standin = tmp / "standin"
    standin.mkdir()
    _write_mnist(standin, n_train=512, n_test=128)
    return _execute({"FNMLP_OFFLINE": "1", "FNMLP_MNIST_STANDIN": str(standin),
                     "FNMLP_MNIST_DIR": None, "TFDS_DATA_DIR": str(tmp / "tfds")})


def test_the_notebook_runs_top_to_bottom_offline(executed):
    errors = [o for c in executed.cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert errors == []
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "MNIST is not available here" in text and "using the stand-in" in text
    assert "manual vs autodiff: PASSED" in text and "predicted " in text  # random stand-in


def test_the_exercise_checks_the_students_tanh(executed):
    """Issue 28 item 4: the student's Tanh is a Layer whose backward is theirs to write (a
    marked line); a first try that takes the derivative at the input fails check_layer and
    the written one passes (the cells assert .passed), then trains."""
    cells = [c for c in executed.cells if c.cell_type == "code" and "check_layer(" in c.source]
    assert len(cells) == 2
    first, mine = ("".join(o.get("text", "") for o in c.outputs) for c in cells)
    assert "assert not first.passed" in cells[0].source and "FirstTryTanh" in first
    assert "YOUR LINE" in cells[1].source and "assert mine.passed" in cells[1].source
    assert "StudentTanh" in mine and "StudentTanh, Dense(2) on the moons: test accuracy" in mine


def test_offline_without_mnist_it_says_so_in_one_line_and_runs_on(tmp_path):
    """No network, no MNIST files: one line says so, the MNIST cells are skipped, every
    other cell runs (the lesson on a train)."""
    nb = _execute({"FNMLP_OFFLINE": "1", "TFDS_DATA_DIR": str(tmp_path / "tfds"),
                   "FNMLP_MNIST_STANDIN": None, "FNMLP_MNIST_DIR": None})
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert [o for o in outputs if o.output_type == "error"] == []
    text = "".join(o.get("text", "") for o in outputs)
    said = [line for line in text.splitlines() if "MNIST is not available here" in line]
    assert len(said) == 1 and "skipping the MNIST cells" in said[0], said
    assert text.count("skipped: no MNIST") == 4
    assert "manual vs autodiff: PASSED" in text and "on the moons: test accuracy" in text


def test_committed_outputs_are_fresh(executed):
    committed = nbformat.read(PATH, as_version=4)
    assert _shape(committed) == _shape(executed)
    pictures = sum(has_png for _, kinds in _shape(committed) for _, has_png, _ in kinds)
    assert pictures >= 9  # a reader on a code host sees the pictures
    counts = [c.execution_count for c in committed.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))  # run once, top to bottom, in order


def test_the_readme_links_to_it():
    with open(os.path.join(REPO, "README.md")) as f:
        assert "scripts/notebooks/lesson.ipynb" in f.read()
