"""Layers: the lesson's modular framework, the functional way.

Shapes: ``B`` batch, ``D_in`` / ``D_out`` a layer's input / output width.

A layer is a small, static, hashable description (a frozen dataclass of its settings, never
of arrays) with three pure functions, in the spirit of ``jax.example_libraries.stax`` and
the CS231n ``affine_forward`` / ``affine_backward`` pairs::

    out_features, params = layer.init(key, in_features, dtype)   # params: a plain pytree
    y, residuals = layer.forward(params, x, ctx)                 # x [B, D_in] -> y [B, D_out]
    dparams, dx = layer.backward(params, residuals, dy)          # dy [B, D_out] -> dx [B, D_in]

``backward`` is the hand-derived vector-Jacobian product: given ``dy = dL/dy`` it returns
``dL/dparams`` (same structure as ``params``) and ``dL/dx``. It never calls autodiff;
:func:`fnmlp.check_layer` compares it with ``jax.vjp`` of ``forward`` and with finite
differences. ``ctx`` (:class:`Context`) carries what changes per call and is not a
parameter: train vs evaluation, the dropout key, the compute dtype.

:class:`Serial` (``serial(*layers)``) is a layer too: its forward runs its children in
order, its backward folds their backwards in reverse (the chain rule), and its params are
a list with **one entry per child that has parameters** (``Dense``, ``LayerNorm``, your
own): ``serial(Dense(8), Relu(), Dense(3))`` has params
``[{"w": [D, 8], "b": [8]}, {"w": [8, 3], "b": [3]}]``. Parameter-free layers
(activations, ``Softmax``, ``Dropout``) take no entry.

:func:`mlp` is the one builder of the plain MLP: ``mlp([D, H1, ..., C], "relu")`` **is**
``serial(Dense(H1), Relu(), ..., Dense(C), in_features=D)`` (equal objects, so equal
params for the same key). Every other spelling (the scripts' flags, ``compare.py``, a
checkpoint's config) goes through it or through ``serial``.

**What a model outputs** (:attr:`Layer.outputs`): ``"probabilities"`` when its last layer
is a ``Softmax``, ``"logits"`` (raw scores, or a regression prediction) otherwise. Every
entry point reads it: a loss that takes logits on a model that outputs probabilities (and
the reverse) is refused before anything compiles, and ``predict_proba`` never applies a
softmax twice. A ``Softmax`` followed only by parameter-free layers (``Dropout``, an
activation) is refused: its output is neither logits nor probabilities.

Writing your own layer takes a few lines (the README has a learnable-slope activation)::

    @dataclass(frozen=True)
    class Scale(Layer):                   # y = a * x, one learnable a per feature
        def init(self, key, d, dtype=jnp.float32):
            return d, {"a": jnp.ones((d,), dtype)}
        def forward(self, params, x, ctx):
            return params["a"] * x, x     # residual: the input
        def backward(self, params, x, dy):
            return {"a": jnp.sum(dy * x, axis=0)}, dy * params["a"]

BatchNorm is not here: its running statistics are state that is neither a parameter nor
an input, and would have to travel beside the params through ``fit``, the optimizers,
checkpoints and populations. ``LayerNorm`` normalises each example on its own and needs
none of that.
"""

from fnmlp.layers.base import EVAL, LOW_PRECISION, Context, Layer, input_width, matmul
from fnmlp.layers.basic import (
    ACTIVATION_LAYERS,
    Activation,
    Dense,
    Dropout,
    LayerNorm,
    Softmax,
    activation_layer,
)
from fnmlp.layers.serial import (
    BUILTIN,
    Serial,
    check_model,
    check_sizes,
    from_config,
    mlp,
    serial,
)

# Relu, Tanh, ...: one class per entry of fnmlp.activations.ACTIVATIONS
globals().update({cls.__name__: cls for cls in ACTIVATION_LAYERS.values()})

__all__ = ["ACTIVATION_LAYERS", "Activation", "BUILTIN", "Context", "Dense", "Dropout",
           "EVAL", "LOW_PRECISION", "Layer", "LayerNorm", "Serial", "Softmax",
           "activation_layer", "check_model", "check_sizes", "from_config", "input_width",
           "matmul", "mlp", "serial",
           *(cls.__name__ for cls in ACTIVATION_LAYERS.values())]
