"""The shape of the house: imports run one way, the optimizer-state contract holds for a
user-written optimizer, formulas are in the docstrings, fit reads on one screen."""

import ast
import importlib
import inspect
import pathlib
import pkgutil
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_compiles

import fnmlp
from fnmlp import activations, data, losses, optim


def _modules():
    names = ["fnmlp"]
    for info in pkgutil.walk_packages(fnmlp.__path__, "fnmlp."):
        names.append(info.name)
    return names


MODULES = set(_modules())


def _is_package(name: str) -> bool:
    return hasattr(importlib.import_module(name), "__path__")


def _tree(name: str) -> ast.Module:
    return ast.parse(inspect.getsource(importlib.import_module(name)))


def _absolute(node: ast.ImportFrom, importer: str) -> str:
    pkg = importer if _is_package(importer) else importer.rpartition(".")[0]
    base = node.module or ""
    if node.level:
        parts = pkg.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
    return base


def _reexports(package: str) -> dict[str, str]:
    """What a package's __init__ (which only re-exports) takes from where:
    {name it exports: the fnmlp module it imports that name from}."""
    found = {}
    for node in _tree(package).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == "_EXPORTS"):  # lazy: fnmlp
            for module, names in ast.literal_eval(node.value).items():
                found.update({name: module for name in names})
        if isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for a in node.names:
                sub = f"{base}.{a.name}"
                found[a.asname or a.name] = sub if sub in MODULES else base
    return found


def _resolve(module: str, name: str | None = None) -> set[str]:
    """The modules (never a package __init__) that ``from module import name`` (or
    ``import module`` when name is None) runs for what it takes: a package is seen
    through to the module each re-exported name comes from."""
    if f"{module}.{name}" in MODULES:
        return _resolve(f"{module}.{name}")
    if module not in MODULES:
        return set()
    if not _is_package(module):
        return {module}
    reexports = _reexports(module)
    if name is None:  # ``import fnmlp.data``: everything the package brings in
        return set().union(*(_resolve(m) for m in set(reexports.values())))
    if name in reexports:
        return _resolve(reexports[name])
    # made at run time (layers' Relu, Tanh, ...): where the object says it was defined
    obj = getattr(importlib.import_module(module), name)
    return _resolve(getattr(obj, "__module__", None) or module)


def _imports(name: str) -> set[str]:
    """Every fnmlp module that ``name`` imports, at the top or inside a function, with
    the package __init__ files seen through (see :func:`_resolve`)."""
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            for a in node.names:
                found |= _resolve(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, name)
            for a in node.names:
                found |= _resolve(base, a.name)
    return found - {name}


def _graph() -> dict[str, set[str]]:
    """The package __init__ files, which only re-export, are left out as importers (an
    import of a package counts as an import of the modules it takes the names from)."""
    return {m: _imports(m) for m in MODULES if not _is_package(m)}


def test_every_module_imports_only_modules_below_it():
    """No cycles in the import graph of fnmlp's modules, the packages (train, io, layers,
    data, cli) included."""
    graph = _graph()
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for dep in sorted(graph.get(m, ())):
            visit(dep, path + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])
    training = {m for m in graph if m.startswith("fnmlp.train.")} | {"fnmlp.population"}
    assert {"fnmlp.train.step", "fnmlp.train.fit", "fnmlp.train.per_example"} <= training
    assert "fnmlp.parallel" in graph["fnmlp.train.step"]  # one way
    assert "fnmlp.parallel" in graph["fnmlp.train.fit"]
    assert not graph["fnmlp.parallel"] & training
    # the files know nothing of training; the command line sits above the library
    assert not (graph["fnmlp.io.checkpoint"] | graph["fnmlp.io.atomic"]) & training
    cli = {m for m in graph if m == "fnmlp.cli" or m.startswith("fnmlp.cli.")}
    for m, deps in graph.items():
        if m not in cli:
            assert not deps & cli, (m, deps & cli)


def test_the_import_graph_sees_through_packages():
    """The witness that the cycle check can fail: an import of a package name is an edge
    to the module the name comes from, so a cycle through an __init__ is not hidden."""
    assert _resolve("fnmlp.layers", "Layer") == {"fnmlp.layers.base"}
    assert _resolve("fnmlp.train", "TrainState") == {"fnmlp.train.step"}
    assert _resolve("fnmlp", "_validate") == {"fnmlp._validate"}
    assert _resolve("fnmlp.data", "train_test_split") == {"fnmlp.data._common"}
    assert "fnmlp.layers.serial" in _imports("fnmlp.io.model_file")
    assert "fnmlp.layers" not in set().union(*_graph().values())  # no __init__ as an edge


def _floor(module: str) -> str:
    """The floor a module lives on: its package (``fnmlp.io.model_file`` -> ``fnmlp.io``),
    or itself for a top-level module (``fnmlp.losses``)."""
    return ".".join(module.split(".")[:2])


def _package_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the graph of floors (modules collapsed to their package), or None."""
    floors: dict[str, set[str]] = {}
    for m, deps in graph.items():
        floors.setdefault(_floor(m), set()).update(_floor(d) for d in deps)
    for f in floors:
        floors[f].discard(f)
    state: dict[str, int] = {}

    def visit(f, path):
        if state.get(f) == 1:
            return path[path.index(f):] + [f]
        if state.get(f) == 2:
            return None
        state[f] = 1
        for dep in sorted(floors.get(f, ())):
            found = visit(dep, path + [f])
            if found:
                return found
        state[f] = 2
        return None

    for f in sorted(floors):
        found = visit(f, [])
        if found:
            return found
    return None


def test_the_import_graph_between_packages_is_one_way():
    """Collapsed to packages (io, data, layers, train, optim, cli, ...; a top-level module
    is its own floor), the imports still run one way: ``io`` reads the input scaling from
    :mod:`fnmlp.scaling`, below both ``io`` and ``data`` (``data.mnist`` writes with
    ``io.atomic``), never from ``data``. The witness: one edge back up a floor is a cycle."""
    graph = _graph()
    assert _package_cycle(graph) is None, " -> ".join(_package_cycle(graph))
    assert "fnmlp.scaling" in graph["fnmlp.io.model_file"]
    assert "fnmlp.io.atomic" in graph["fnmlp.data.mnist"]
    assert not any(d.startswith("fnmlp.data.") for d in graph["fnmlp.io.model_file"])
    back = {**graph, "fnmlp.io.model_file": graph["fnmlp.io.model_file"] | {"fnmlp.data.toy"}}
    assert _package_cycle(back) in (["fnmlp.data", "fnmlp.io", "fnmlp.data"],
                                    ["fnmlp.io", "fnmlp.data", "fnmlp.io"])


MAX_LINES = 600


def test_the_names_the_flags_list_are_the_registries():
    """fnmlp._names (jax-free, for --help) holds exactly the registries' names."""
    from fnmlp import _names

    assert _names.ACTIVATION_NAMES == tuple(sorted(activations.ACTIVATIONS))
    assert _names.OPTIMIZER_NAMES == tuple(sorted(optim.OPTIMIZERS))
    assert _names.LOSS_NAMES == tuple(sorted(losses.LOSSES))
    assert _names.TOY_SET_NAMES == tuple(sorted(data.TOY_SETS))
    assert _names.REGRESSION_SET_NAMES == tuple(sorted(data.REGRESSION_SETS))


def test_fnmlp_imports_each_name_on_first_use():
    """``import fnmlp`` imports no jax; every name of ``__all__`` resolves (from the module
    _EXPORTS names); ``fnmlp.predict`` is the function (its module is fnmlp.prediction)."""
    code = ("import sys, fnmlp; assert 'jax' not in sys.modules, 'jax imported';"
            " import fnmlp.prediction; assert callable(fnmlp.predict);"
            " [getattr(fnmlp, n) for n in fnmlp.__all__]; assert 'jax' in sys.modules;"
            " assert fnmlp.train.fit is fnmlp.fit and fnmlp.io.load_model is fnmlp.load_model")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fnmlp.nope  # noqa: B018
    assert set(fnmlp.__all__) <= set(dir(fnmlp))


def test_the_front_door_is_one_short_list_and_the_old_names_say_where_they_went():
    """Issue 42 item 8: about 25 names, listed once (``__all__`` is made from _EXPORTS);
    the other names the front door held before resolve with a DeprecationWarning naming their
    module; the pair that read like Layer's (forward/backward) is renamed."""
    assert len(fnmlp.__all__) <= 28 and "__version__" in fnmlp.__all__
    assert fnmlp.__all__[1:] == [n for names in fnmlp._EXPORTS.values() for n in names]
    fnmlp._WARNED.clear()  # once per name and process: this test sees each one first
    for name, (module, new) in fnmlp._OLD.items():
        with pytest.warns(DeprecationWarning, match=f"use {module}.{new}"):
            assert getattr(fnmlp, name) is getattr(importlib.import_module(module), new)
    assert len(fnmlp._OLD) == 47  # 44 names that left the front door, 3 renamed
    with pytest.raises(AttributeError, match=r"'Tanh'; it lives in fnmlp.layers.Tanh"):
        fnmlp.Tanh  # noqa: B018  (never at the front door: a hint where it lives)
    from fnmlp import grad

    with pytest.warns(DeprecationWarning, match="now fnmlp.grad.predict_one"):
        out = grad.forward(fnmlp.mlp([2, 3]), fnmlp.mlp([2, 3]).init_params(
            jax.random.key(0)), jnp.ones(2))
    assert out.shape == (3,)


def test_no_module_is_over_600_lines():
    """Issue 27: a room per job. Every fnmlp/**/*.py, package __init__ files included."""
    root = pathlib.Path(fnmlp.__file__).parent
    sizes = {str(p.relative_to(root.parent)): len(p.read_text().splitlines())
             for p in root.rglob("*.py")}
    assert len(sizes) > 20 and sizes["fnmlp/__init__.py"] > 50  # it counted the tree
    over = {p: n for p, n in sizes.items() if n > MAX_LINES}
    assert not over, over


WRITES = {"write_text", "write_bytes", "savefig", "save", "savez", "savez_compressed",
          "dump", "tofile"}


def _unsafe_writes(source: str) -> list[int]:
    """The lines of ``source`` that write a file other than through ``write_atomic``:
    ``path.write_text(...)``, ``fig.savefig(...)``, ``np.savez(...)``, ``json.dump``,
    ``open(..., "w")`` not inside a ``write_atomic(...)`` call. A writability probe
    (``write_bytes(b"")``) writes nothing of the user's and is let through."""
    tree = ast.parse(source)
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def atomic(node):
        while node in parent:
            node = parent[node]
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(
                    node.func, "attr", None)) == "write_atomic":
                return True
        return False

    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in WRITES:
            if f.attr == "write_bytes" and node.args and getattr(node.args[0], "value",
                                                                 None) == b"":
                continue
        elif "open" in ast.unparse(f):  # open, gzip.open, (gzip.open if gz else open)
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            if not (isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+")):
                continue
        else:
            continue
        if not atomic(node):
            found.append(node.lineno)
    return found


def test_every_file_fnmlp_and_its_scripts_write_is_written_atomically():
    """A run killed mid-write keeps the file before it whole: checkpoints, JSON records,
    caches and pictures all go through :mod:`fnmlp.io.atomic` (``compare.py`` wrote its
    ``compare.json`` and every picture was written by ``savefig`` in place)."""
    root = pathlib.Path(fnmlp.__file__).parent.parent
    files = [p for p in [*(root / "fnmlp").rglob("*.py"), *(root / "scripts").rglob("*.py")]
             if p.name != "atomic.py"]
    unsafe = {str(p.relative_to(root)): lines for p in files
              if (lines := _unsafe_writes(p.read_text()))}
    assert len(files) > 40 and not unsafe, unsafe
    # the rule sees the ways a file is written, and write_atomic's lambda as safe
    assert _unsafe_writes("p.write_text('x')\nfig.savefig(p)\nopen(p, 'w')\n"
                          "np.savez(p, a=a)\nopen(p)\nprobe.write_bytes(b'')\n"
                          "(gzip.open if gz else open)(p, 'wb')") == [1, 2, 3, 4, 7]
    assert _unsafe_writes("write_atomic(p, lambda f: fig.savefig(f, format='png'))") == []


class _ClippedSignState(NamedTuple):
    count: jax.Array


def _sign_sgd_without_rate():
    """A user's optimizer whose state has no learning_rate field."""
    def init(params):
        return _ClippedSignState(jnp.zeros((), jnp.int32))

    def update(grads, state, params):
        return jax.tree.map(lambda g: -0.01 * jnp.sign(g), grads), state._replace(
            count=state.count + 1)

    return fnmlp.optim.GradientTransformation(init, update)


class _SignState(NamedTuple):
    count: jax.Array
    learning_rate: jax.Array


def _sign_sgd(lr):
    def init(params):
        return _SignState(jnp.zeros((), jnp.int32), jnp.asarray(lr, jnp.float32))

    def update(grads, state, params):
        u = jax.tree.map(lambda g: -state.learning_rate * jnp.sign(g), grads)
        return u, state._replace(count=state.count + 1)

    return fnmlp.optim.GradientTransformation(init, update)


def test_a_user_optimizer_without_the_contract_is_refused_before_compiling():
    ds = data.make_moons(200, seed=0)
    model = fnmlp.mlp([2, 8, 2])
    params = model.init_params(jax.random.key(0))
    with count_compiles("epoch") as compiles, pytest.raises(
            ValueError, match="scalar array field 'learning_rate'.*_ClippedSignState"):
        fnmlp.fit(model, params, ds.x, ds.y, optimizer=_sign_sgd_without_rate(),
                  verbose=False)
    assert compiles == []


def test_a_user_optimizer_with_the_contract_trains():
    ds = data.make_moons(400, seed=0)
    model = fnmlp.mlp([2, 16, 2], "tanh")
    params = model.init_params(jax.random.key(0))
    result = fnmlp.fit(model, params, ds.x, ds.y, epochs=15, batch_size=32,
                       optimizer=_sign_sgd(0.01), verbose=False)
    assert result.history[-1]["learning_rate"] == pytest.approx(0.01)
    assert result.history[-1]["train_loss"] < 0.5 * result.history[0]["train_loss"]
    state = optim.set_learning_rate(result.state.opt_state, 0.002)
    assert float(optim.get_learning_rate(state)) == pytest.approx(0.002)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_docstrings_carry_formula_and_derivative(name):
    doc = inspect.getdoc(activations.ACTIVATIONS[name].fn)
    assert f"{name}(z) =" in doc and "Derivative" in doc, doc


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_loss_docstrings_carry_formula_and_derivative(name):
    doc = inspect.getdoc(losses.LOSSES[name].fn)
    assert "loss(z, " in doc and "Derivative" in doc and "d loss / dz" in doc, doc


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_optimizer_docstrings_give_the_rule_and_every_argument(name):
    fn = optim.OPTIMIZERS[name]
    doc = inspect.getdoc(fn)
    assert "p <- p -" in doc and "PyTorch" in doc
    for arg, param in inspect.signature(fn).parameters.items():
        assert f"{arg}" in doc.split("Args:")[1], arg
        if param.default is not inspect.Parameter.empty and param.default is not None:
            assert "default" in doc.split("Args:")[1]


def test_fit_reads_on_one_screen():
    lines = inspect.getsource(fnmlp.fit).splitlines()
    doc = inspect.getdoc(fnmlp.fit).splitlines()
    assert len(lines) - len(doc) <= 70, len(lines) - len(doc)


def test_no_one_letter_module_aliases():
    """(``_validate as V`` read badly; ``PartitionSpec as P`` is JAX's own idiom.)"""
    for name in _modules():
        tree = ast.parse(inspect.getsource(importlib.import_module(name)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    module_like = a.name.split(".")[-1][:1].islower()  # not a class (P)
                    assert not (module_like and a.asname and len(a.asname) == 1), (
                        name, a.name, a.asname)


def test_user_optimizer_state_keeps_float64_rate(x64):
    params = [{"w": jnp.ones((2, 2), jnp.float64), "b": jnp.zeros(2, jnp.float64)}]
    for name in optim.OPTIMIZERS:
        state = optim.get_optimizer(name, 0.1).init(params)
        assert state.learning_rate.dtype == np.float64, name
