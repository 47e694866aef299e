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

Importing fnmlp is cheap: each name is imported from its module on first use (PEP 562),
so a script's ``--help`` answers before jax is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import types

from fnmlp._version import __version__

_EXPORTS = {  # module: the names fnmlp takes from it, imported on first use
    "fnmlp.activations": ("ACTIVATIONS", "get_activation"),
    "fnmlp.compile_cache": ("enable_compile_cache",),
    "fnmlp.data": ("load_mnist", "load_mnist_idx", "load_mnist_tfds"),
    "fnmlp.grad": (
        "backward", "batched_forward", "forward", "forward_with_cache", "loss", "manual_grad",
        "manual_value_and_grad",
    ),
    "fnmlp.gradcheck": (
        "GradReport", "check_gradients", "check_layer", "compare_grads", "finite_difference_grad",
    ),
    "fnmlp.initializers": ("INITIALIZERS",),
    "fnmlp.io": ("SavedModel", "load_checkpoint", "load_model", "model_config", "save_checkpoint"),
    "fnmlp.layers": (
        "Dense", "Dropout", "Layer", "LayerNorm", "Serial", "Softmax", "mlp", "serial",
    ),
    "fnmlp.losses": ("LOSSES", "accuracy", "get_loss", "zero_one_loss"),
    "fnmlp.metrics": ("classification_report", "confusion_matrix", "per_class_metrics"),
    "fnmlp.optim": (
        "OPTIMIZERS", "GradientTransformation", "adam", "adamw", "apply_updates",
        "check_optimizer", "clip_grads_by_global_norm", "get_learning_rate", "get_optimizer",
        "matrices_only", "momentum", "nesterov", "rmsprop", "set_learning_rate", "sgd",
    ),
    "fnmlp.population": ("ensemble_predict_proba", "fit_population"),
    "fnmlp.predict": ("predict", "predict_classes", "predict_proba"),
    "fnmlp.train": (
        "Batch", "EarlyStopping", "FitResult", "Trainer", "TrainingDiverged", "TrainState",
        "evaluate", "fit", "init_state", "make_train_step", "make_trainer", "per_example_grads",
    ),
    "fnmlp.weights": ("compute_class_weight", "compute_sample_weight"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str):
    """``fnmlp.fit`` and the other exports, imported from their module on first use."""
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    elif name.startswith("__") or importlib.util.find_spec(f"fnmlp.{name}") is None:
        raise AttributeError(f"module 'fnmlp' has no attribute {name!r}")
    else:  # a submodule: fnmlp.data, fnmlp.train, ...
        value = importlib.import_module(f"fnmlp.{name}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """fnmlp's module type: importing the submodule ``fnmlp.predict`` does not replace the
    function ``fnmlp.predict`` exported under the same name."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and name in _WHERE:
            return
        super().__setattr__(name, value)


import sys  # noqa: E402

sys.modules[__name__].__class__ = _Package
del sys

__all__ = [
    "ACTIVATIONS", "Batch", "Dense", "Dropout", "EarlyStopping", "FitResult", "GradReport",
    "GradientTransformation", "INITIALIZERS", "LOSSES", "Layer", "LayerNorm", "OPTIMIZERS",
    "SavedModel", "Serial", "Softmax", "TrainState", "Trainer", "TrainingDiverged",
    "__version__", "accuracy", "activations", "adam", "adamw", "apply_updates", "backward",
    "batched_forward", "check_gradients", "check_layer", "check_optimizer",
    "classification_report", "clip_grads_by_global_norm", "compare_grads",
    "compute_class_weight", "compute_sample_weight", "confusion_matrix", "data",
    "enable_compile_cache", "ensemble_predict_proba", "evaluate", "finite_difference_grad",
    "fit", "fit_population", "forward", "forward_with_cache", "get_activation",
    "get_learning_rate", "get_loss", "get_optimizer", "gradcheck", "init_state", "layers",
    "load_checkpoint", "load_mnist", "load_mnist_idx", "load_mnist_tfds", "load_model",
    "loss", "losses", "make_train_step", "make_trainer", "manual_grad",
    "manual_value_and_grad", "matrices_only", "metrics", "mlp", "model_config", "momentum",
    "nesterov", "optim", "per_class_metrics", "per_example_grads", "population", "predict",
    "predict_classes", "predict_proba", "rmsprop", "save_checkpoint", "schedules", "serial",
    "set_learning_rate", "sgd", "weights", "zero_one_loss",
]
