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
"""

from fnmlp import (
    activations,
    data,
    gradcheck,
    layers,
    losses,
    metrics,
    optim,
    population,
    schedules,
    weights,
)
from fnmlp._version import __version__
from fnmlp.activations import ACTIVATIONS, get_activation
from fnmlp.compile_cache import enable_compile_cache
from fnmlp.data import load_mnist, load_mnist_idx, load_mnist_tfds
from fnmlp.grad import (
    backward,
    batched_forward,
    forward,
    forward_with_cache,
    loss,
    manual_grad,
    manual_value_and_grad,
)
from fnmlp.gradcheck import (
    GradReport,
    check_gradients,
    check_layer,
    compare_grads,
    finite_difference_grad,
)
from fnmlp.initializers import INITIALIZERS
from fnmlp.io import (
    SavedModel,
    load_checkpoint,
    load_model,
    model_config,
    save_checkpoint,
)
from fnmlp.layers import (
    Dense,
    Dropout,
    Layer,
    LayerNorm,
    Serial,
    Softmax,
    mlp,
    serial,
)
from fnmlp.losses import LOSSES, accuracy, get_loss, zero_one_loss
from fnmlp.metrics import (
    classification_report,
    confusion_matrix,
    per_class_metrics,
)
from fnmlp.optim import (
    OPTIMIZERS,
    GradientTransformation,
    adam,
    adamw,
    apply_updates,
    check_optimizer,
    clip_grads_by_global_norm,
    get_learning_rate,
    get_optimizer,
    matrices_only,
    momentum,
    nesterov,
    rmsprop,
    set_learning_rate,
    sgd,
)
from fnmlp.population import ensemble_predict_proba, fit_population
from fnmlp.predict import predict, predict_classes, predict_proba
from fnmlp.train import (
    Batch,
    EarlyStopping,
    FitResult,
    Trainer,
    TrainingDiverged,
    TrainState,
    evaluate,
    fit,
    init_state,
    make_train_step,
    make_trainer,
    per_example_grads,
)
from fnmlp.weights import compute_class_weight, compute_sample_weight

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
