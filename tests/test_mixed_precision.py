"""Mixed precision: bfloat16 operands, float32 accumulation and results (the products
that bf16 units compute natively), on both gradient paths; float32 unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnmlp
from fnmlp.layers import Dense
from fnmlp.train import make_train_step, value_and_grad_fn

BF = jnp.bfloat16
ONE_PLUS = 1 + 2.0**-8  # exact in float32, not in bfloat16 (which rounds it to 1.0)


def _bf(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, BF), tree)


def _layer(w, b):
    return {"w": np.asarray(w, np.float32), "b": np.asarray(b, np.float32)}


def test_forward_products_accumulate_in_float32():
    # [1, 1] @ [[1], [2^-8]]: both operands exact in bfloat16, the sum is not
    params = _bf([_layer([[1.0], [2.0**-8]], [0.0])])
    x = jnp.asarray([[1.0, 1.0]], BF)
    out, cache = fnmlp.forward_with_cache(params, x, "relu")
    assert out.dtype == jnp.float32 and float(out[0, 0]) == ONE_PLUS
    assert float(fnmlp.forward(params, x[0], "relu")[0]) == ONE_PLUS  # the per-example one


def test_weight_gradient_accumulates_in_float32():
    # dW = a^T @ delta = [1, 1] . [1, 2^-8]: one weight, a sum of two products
    params = _bf(_layer([[0.5]], [0.0]))
    x_in = jnp.asarray([[1.0], [1.0]], BF)  # Dense's residual: its (bf16) input
    delta = jnp.asarray([[1.0], [2.0**-8]], jnp.float32)
    grads, _ = Dense(1).backward(params, x_in, delta)
    assert grads["w"].dtype == jnp.float32 and float(grads["w"][0, 0]) == ONE_PLUS


def _dots(text):
    """``(operand types, result type)`` of every dot_general in StableHLO text."""
    out = []
    for line in text.splitlines():
        if "stablehlo.dot_general" in line:
            operands, result = line.rsplit(":", 1)[1].split("->")
            out.append((operands, result))
    return out


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_every_product_takes_bf16_and_gives_float32(grad):
    """The hand-derived path runs all eight products of a 3-layer net (3 forward, 3 weight
    gradients, 2 input gradients) as bf16 x bf16 -> float32. jax.grad's transpose
    of such a product upcasts the bf16 operand to the float32 cotangent, so on the autodiff
    path only the forward products are bf16 (its backward products run in float32)."""
    sizes = [6, 5, 4, 3]
    params = _bf(fnmlp.init_mlp(jax.random.key(0), sizes))
    x = jax.random.normal(jax.random.key(1), (8, 6)).astype(BF)
    y = jnp.arange(8) % 3
    f = value_and_grad_fn(grad, "tanh", "softmax_cross_entropy", jnp.float32)
    dots = _dots(jax.jit(f).lower(params, x, y).as_text())
    assert len(dots) == 8
    mixed = [d for d in dots if d[0].count("bf16") == 2 and "f32" in d[1] and "bf16" not in d[1]]
    assert len(mixed) == (8 if grad == "manual" else 3), dots
    assert all("bf16" not in d[1] for d in dots)  # no product rounds its result to bf16
    value, grads, out = f(params, x, y)
    assert value.dtype == out.dtype == jnp.float32


def test_float32_products_are_unchanged():
    """Without a low-precision dtype the kernels are plain float32 ``@``."""
    params = fnmlp.init_mlp(jax.random.key(0), [4, 3, 2])
    x = jax.random.normal(jax.random.key(1), (5, 4))
    out, _ = fnmlp.forward_with_cache(params, x, "relu")
    ref = np.maximum(np.asarray(x) @ np.asarray(params[0]["w"]) + np.asarray(params[0]["b"]), 0)
    ref = ref @ np.asarray(params[1]["w"]) + np.asarray(params[1]["b"])
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6, atol=1e-6)


def test_mixed_gradients_are_closer_to_float32_than_bf16_rounding_allows():
    """The hand-derived float32-accumulated weight gradients of a 256-64-10 batch stay
    within bfloat16's input rounding (inputs and weights rounded to 8 bits: a few % of
    the gradient's norm), and the manual and autodiff paths agree to that level."""
    key = jax.random.key(0)
    p = fnmlp.init_mlp(key, [256, 64, 10])
    x = jax.random.uniform(key, (64, 256))
    y = jnp.arange(64) % 10
    _, g32, _ = jax.jit(value_and_grad_fn("manual", "relu", "softmax_cross_entropy"))(p, x, y)
    pb, xb = _bf(p), x.astype(BF)
    for grad in ("manual", "autodiff"):
        f = jax.jit(value_and_grad_fn(grad, "relu", "softmax_cross_entropy", jnp.float32))
        _, g, _ = f(pb, xb, y)
        for a, b in zip(g, g32):
            rel = jnp.linalg.norm(a["w"].astype(jnp.float32) - b["w"]) / jnp.linalg.norm(b["w"])
            assert float(rel) < 0.08, (grad, float(rel))


@pytest.mark.parametrize("grad", ["manual", "autodiff"])
def test_biases_stay_float32_under_bf16_compute(grad):
    """Only a product's operands are rounded: a bias of 1 + 2^-8 (which bfloat16 rounds to
    1) reaches the loss intact. MSE of out = 0 * w + b against 0 is b^2 = 1.0078278,
    not 1.0; the bias gradient 2 b is float32 too."""
    params = [_layer([[0.5]], [ONE_PLUS])]
    state = fnmlp.init_state(params, fnmlp.sgd(0.1))
    step = jax.jit(make_train_step(fnmlp.sgd(0.1), "relu", "mse", grad, jnp.bfloat16))
    batch = fnmlp.Batch(jnp.zeros((2, 1)), jnp.zeros((2, 1)))
    _, metrics = step(state, batch)
    assert float(metrics["loss"]) == np.float32(ONE_PLUS) ** 2
    _, grads, _ = value_and_grad_fn(grad, "relu", "mse", jnp.float32)(
        params, batch.x, batch.y, fnmlp.layers.Context(True, None, BF))
    assert grads[0]["b"].dtype == jnp.float32
    assert float(grads[0]["b"][0]) == 2 * np.float32(ONE_PLUS)
