"""fnmlp: a functional neural-network library in JAX.

A model is a composition of layers (:mod:`fnmlp.layers`: ``serial(Dense(256), Tanh(),
Dropout(0.2), Dense(10))``), each a static description with pure ``init``, ``forward``
and a hand-written ``backward``; :func:`init_mlp` is the plain MLP's sugar. Params are
plain pytrees, ``[{"w": [D_in, D_out], "b": [D_out]}, ...]``; forward passes, losses and
optimizers are pure functions; the hand-derived backward (:func:`manual_grad`) sits beside
``jax.grad``, and :func:`check_gradients` / :func:`check_layer` compare them, layer by
layer.

Shape legend used throughout: ``B`` batch, ``N`` dataset size, ``D`` input features,
``H`` hidden width, ``C`` outputs (classes or regression targets).
"""

from fnmlp import (  # noqa: E402
    activations,
    data,
    gradcheck,
    inference,
    layers,
    losses,
    metrics,
    optim,
    population,  # noqa: E402
    schedules,
    weights,
)
from fnmlp._version import __version__  # noqa: E402
from fnmlp.activations import ACTIVATIONS, get_activation  # noqa: E402
from fnmlp.backprop import backward, manual_grad, manual_value_and_grad  # noqa: E402
from fnmlp.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from fnmlp.compile_cache import enable_compile_cache  # noqa: E402
from fnmlp.data import load_mnist, load_mnist_idx, load_mnist_tfds  # noqa: E402
from fnmlp.gradcheck import (  # noqa: E402
    GradReport,
    check_gradients,
    check_layer,
    compare_grads,
    finite_difference_grad,
)
from fnmlp.inference import (  # noqa: E402
    Model,
    load_model,
    predict,
    predict_classes,
    predict_proba,
)
from fnmlp.initializers import INITIALIZERS  # noqa: E402
from fnmlp.layers import (  # noqa: E402
    Dense,
    Dropout,
    Layer,
    LayerNorm,
    Serial,
    Softmax,
    serial,
)
from fnmlp.losses import LOSSES, accuracy, get_loss, zero_one_loss  # noqa: E402
from fnmlp.metrics import (  # noqa: E402
    classification_report,
    confusion_matrix,
    per_class_metrics,
)
from fnmlp.mlp import (  # noqa: E402
    batched_forward,
    forward,
    forward_with_cache,
    init_mlp,
    loss,
)
from fnmlp.optim import (  # noqa: E402
    OPTIMIZERS,
    GradientTransformation,
    adam,
    adamw,
    apply_updates,
    check_optimizer,
    clip_grads_by_global_norm,
    get_learning_rate,
    get_optimizer,
    momentum,
    nesterov,
    rmsprop,
    set_learning_rate,
    sgd,
)
from fnmlp.population import ensemble_predict_proba, fit_population  # noqa: E402
from fnmlp.train import (  # noqa: E402
    Batch,
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
from fnmlp.weights import compute_class_weight, compute_sample_weight  # noqa: E402

__all__ = [
    "ACTIVATIONS", "Batch", "Dense", "Dropout", "FitResult", "Layer", "LayerNorm", "Serial",
    "Softmax", "__version__", "check_layer", "layers", "serial", "GradReport",
    "GradientTransformation",
    "INITIALIZERS", "LOSSES", "Model", "OPTIMIZERS", "TrainState", "Trainer",
    "TrainingDiverged", "accuracy", "activations", "adam", "adamw", "apply_updates",
    "backward", "batched_forward", "check_gradients", "check_optimizer",
    "clip_grads_by_global_norm", "compare_grads", "data", "enable_compile_cache",
    "ensemble_predict_proba", "evaluate",
    "finite_difference_grad", "fit", "fit_population", "forward", "forward_with_cache",
    "get_activation", "get_learning_rate", "get_loss", "get_optimizer", "gradcheck",
    "inference", "init_mlp", "init_state", "load_checkpoint", "load_mnist", "load_mnist_idx",
    "load_mnist_tfds", "load_model", "loss", "losses", "make_train_step", "make_trainer",
    "manual_grad", "manual_value_and_grad", "momentum", "nesterov", "optim",
    "per_example_grads", "population", "predict", "predict_classes", "predict_proba",
    "rmsprop", "save_checkpoint", "schedules", "set_learning_rate", "sgd", "zero_one_loss",
    "classification_report", "compute_class_weight", "compute_sample_weight",
    "confusion_matrix", "metrics", "per_class_metrics", "weights",
]
