"""The shape of the house: imports run one way, the optimizer-state contract holds for a
user-written optimizer, formulas are in the docstrings, fit reads on one screen."""

import ast
import inspect
import pkgutil
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


def _imports(name: str) -> set[str]:
    """Every fnmlp module that ``name`` imports, at the top or inside a function."""
    import importlib

    mod = importlib.import_module(name)
    tree = ast.parse(inspect.getsource(mod))
    pkg = name if hasattr(mod, "__path__") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    modules = set(_modules())
    return {m for m in found if m in modules and m != name}


def test_every_module_imports_only_modules_below_it():
    """No cycles in the import graph of fnmlp's modules (the package __init__ files,
    which only re-export, are left out as importers)."""
    graph = {m: _imports(m) - {"fnmlp", "fnmlp.data"} for m in _modules()
             if m not in ("fnmlp", "fnmlp.data")}
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
    assert "fnmlp.parallel" in graph["fnmlp.train"]  # at the top, one way
    assert not graph["fnmlp.parallel"] & {"fnmlp.train", "fnmlp.population"}


class _ClippedSignState(NamedTuple):
    count: jax.Array


def _sign_sgd_without_rate():
    """A user's optimizer whose state has no learning_rate field."""
    def init(params):
        return _ClippedSignState(jnp.zeros((), jnp.int32))

    def update(grads, state, params):
        return jax.tree.map(lambda g: -0.01 * jnp.sign(g), grads), state._replace(
            count=state.count + 1)

    return fnmlp.GradientTransformation(init, update)


class _SignState(NamedTuple):
    count: jax.Array
    learning_rate: jax.Array


def _sign_sgd(lr):
    def init(params):
        return _SignState(jnp.zeros((), jnp.int32), jnp.asarray(lr, jnp.float32))

    def update(grads, state, params):
        u = jax.tree.map(lambda g: -state.learning_rate * jnp.sign(g), grads)
        return u, state._replace(count=state.count + 1)

    return fnmlp.GradientTransformation(init, update)


def test_a_user_optimizer_without_the_contract_is_refused_before_compiling():
    ds = data.make_moons(200, seed=0)
    params = fnmlp.init_mlp(jax.random.key(0), [2, 8, 2])
    with count_compiles("epoch") as compiles, pytest.raises(
            ValueError, match="scalar array field 'learning_rate'.*_ClippedSignState"):
        fnmlp.fit(params, ds.x, ds.y, optimizer=_sign_sgd_without_rate(), verbose=False)
    assert compiles == []


def test_a_user_optimizer_with_the_contract_trains():
    ds = data.make_moons(400, seed=0)
    params = fnmlp.init_mlp(jax.random.key(0), [2, 16, 2], "tanh")
    result = fnmlp.fit(params, ds.x, ds.y, epochs=15, batch_size=32, activation="tanh",
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
        import importlib

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
