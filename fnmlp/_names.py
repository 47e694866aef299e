"""The names of the built-in activations, optimizers and data sets, without importing jax:
what the scripts' flags accept and ``--help`` lists. tests/test_house.py checks them
against the registries (:data:`fnmlp.activations.ACTIVATIONS`,
:data:`fnmlp.optim.OPTIMIZERS`, :data:`fnmlp.losses.LOSSES`, ``fnmlp.data.TOY_SETS``,
``fnmlp.data.REGRESSION_SETS``)."""

ACTIVATION_NAMES = ("elu", "gelu", "identity", "leaky_relu", "relu", "selu", "sigmoid", "silu",
                    "softplus", "tanh")
OPTIMIZER_NAMES = ("adam", "adamw", "momentum", "nesterov", "rmsprop", "sgd")
TOY_SET_NAMES = ("blobs", "circles", "classification", "imbalanced", "linear", "moons",
                 "spirals", "xor")  # fnmlp.data.TOY_SETS
REGRESSION_SET_NAMES = ("multi", "sine", "surface")  # fnmlp.data.REGRESSION_SETS
LOSS_NAMES = ("categorical_cross_entropy", "huber", "mae", "mse", "sigmoid_cross_entropy",
              "softmax_cross_entropy")  # fnmlp.losses.LOSSES, every registered loss
SEED_LIMIT = 2**32
"""Seeds are integers in ``[0, SEED_LIMIT)``: what ``jax.random.key`` holds without wrapping
(``key(2**32)`` equals ``key(0)`` with float64 off) and NumPy's generators take. The one
rule of :func:`fnmlp._checks.check_seed` and the scripts' ``--seed``/``--sweep seed=``."""
