"""fnmlp: a functional neural-network library in JAX.

A model is one object, a composition of layers (:mod:`fnmlp.layers`):
``mlp([784, 128, 10], "relu")`` is ``serial(Dense(128), Relu(), Dense(10),
in_features=784)``; each layer is a static description with pure ``init``, ``forward`` and
a hand-written ``backward``. The model comes first in every call that runs a network
(``fit(model, params, x, y)``, ``loss``, ``manual_grad``, ``evaluate``, ``predict``,
``check_gradients``, ...). Params are plain pytrees (``model.init_params(key)``); losses
and optimizers are pure functions; the hand-derived backward (:func:`manual_grad`) sits
beside ``jax.grad``, and :func:`check_gradients` / :func:`check_layer` compare them, layer
by layer.

Shape legend used throughout: ``B`` batch, ``N`` dataset size, ``D`` input features,
``H`` hidden width, ``C`` outputs (classes or regression targets).

The front door holds the names of the lesson, in one list (:data:`_EXPORTS`; ``__all__``
is made from it); everything else lives in its module, named after its job:
``fnmlp.layers`` (Dense, Tanh, Dropout, ...), ``fnmlp.optim`` (adamw, rmsprop, chain,
...), ``fnmlp.losses``, ``fnmlp.gradcheck`` (compare_grads, ...), ``fnmlp.grad``,
``fnmlp.train``, ``fnmlp.metrics``, ``fnmlp.data``, ``fnmlp.io``. A name that stood at the
front door before still resolves there, with a DeprecationWarning naming its module.

Importing fnmlp is cheap: each name is imported from its module on first use (PEP 562),
so a script's ``--help`` answers before jax is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

from fnmlp._version import __version__

_EXPORTS = {  # module: the front door's names it holds, imported on first use
    "fnmlp.layers": ("Layer", "mlp", "serial"),
    "fnmlp.grad": ("loss", "manual_grad"),
    "fnmlp.gradcheck": ("check_gradients", "check_layer"),
    "fnmlp.optim": ("adam", "sgd"),
    "fnmlp.train": ("FitResult", "TrainState", "evaluate", "fit", "init_state"),
    "fnmlp.prediction": ("predict", "predict_classes", "predict_proba"),
    "fnmlp.losses": ("accuracy",),
    "fnmlp.metrics": ("classification_report",),
    "fnmlp.population": ("fit_population",),
    "fnmlp.io": ("load_checkpoint", "load_model", "model_config", "save_checkpoint"),
    "fnmlp.data": ("load_mnist",),
    "fnmlp.compile_cache": ("enable_compile_cache",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

_MOVED = {  # names the front door held before issue 42: where they live
    "fnmlp.activations": ("ACTIVATIONS", "get_activation"),
    "fnmlp.data": ("load_mnist_idx", "load_mnist_tfds"),
    "fnmlp.grad": ("forward_with_cache", "manual_value_and_grad"),
    "fnmlp.gradcheck": ("GradReport", "compare_grads", "finite_difference_grad"),
    "fnmlp.initializers": ("INITIALIZERS",),
    "fnmlp.io": ("SavedModel",),
    "fnmlp.layers": ("Dense", "Dropout", "LayerNorm", "Serial", "Softmax"),
    "fnmlp.losses": ("LOSSES", "get_loss", "zero_one_loss"),
    "fnmlp.metrics": ("confusion_matrix", "per_class_metrics"),
    "fnmlp.optim": ("OPTIMIZERS", "GradientTransformation", "adamw", "apply_updates",
                    "check_optimizer", "clip_grads_by_global_norm", "get_learning_rate",
                    "get_optimizer", "matrices_only", "momentum", "nesterov", "rmsprop",
                    "set_learning_rate"),
    "fnmlp.population": ("ensemble_predict_proba",),
    "fnmlp.train": ("Batch", "EarlyStopping", "Trainer", "TrainingDiverged", "make_train_step",
                    "make_trainer", "per_example_grads"),
    "fnmlp.weights": ("compute_class_weight", "compute_sample_weight"),
}
_RENAMED = {"forward": ("fnmlp.grad", "predict_one"),
            "batched_forward": ("fnmlp.grad", "batched_predict"),
            "backward": ("fnmlp.grad", "backprop")}
_OLD = {name: (module, name) for module, names in _MOVED.items() for name in names}
_OLD.update(_RENAMED)
_WARNED: set = set()  # one DeprecationWarning per name (``from fnmlp import x`` asks twice)
_HOMES = ("layers", "optim", "train", "losses", "gradcheck", "grad", "data", "metrics",
          "schedules", "activations", "io", "population", "weights", "parallel")


def __getattr__(name: str):
    """``fnmlp.fit`` and the other exports, imported from their module on first use."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    elif name in _OLD:  # not cached: a later use still resolves it here
        module, new = _OLD[name]
        if name not in _WARNED:
            _WARNED.add(name)
            warnings.warn(f"fnmlp.{name} has left the front door: use {module}.{new}",
                          DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new)
    elif name.startswith("_") or importlib.util.find_spec(f"fnmlp.{name}") is None:
        raise AttributeError(f"module 'fnmlp' has no attribute {name!r}{_home_of(name)}")
    else:  # a submodule: fnmlp.data, fnmlp.train, ...
        value = importlib.import_module(f"fnmlp.{name}")
    globals()[name] = value
    return value


def _home_of(name: str) -> str:
    """``"; it lives in fnmlp.layers.Tanh"`` where a public module has ``name``, else ``""``
    (asked only on the way to an AttributeError, and never for a private name)."""
    if name.startswith("_"):
        return ""
    for home in _HOMES:
        module = importlib.import_module(f"fnmlp.{home}")
        if name in getattr(module, "__all__", ()) or getattr(
                vars(module).get(name), "__module__", "").startswith("fnmlp"):
            return f"; it lives in fnmlp.{home}.{name}"
    return ""


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["__version__", *_WHERE]
