"""fnmlp.train.per_example: per_example_grads average to the batch gradient; past the
memory, chunk_size= gives the unchunked result, and a size that cannot fit is refused with a
ValueError (and a chunk_size or batch that fits) before anything compiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import compiled_programs

import fnmlp
from fnmlp import _validate
from fnmlp.gradcheck import random_batch
from fnmlp.train import PER_EXAMPLE_WORK, per_example_memory


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
def test_chunked_equals_unchunked(x64, grad):
    key = jax.random.key(1)
    sizes = [4, 6, 3]
    model = fnmlp.mlp(sizes, "tanh")
    params = model.init_params(key, dtype=jnp.float64)
    x, y = random_batch(key, 7, sizes, "softmax_cross_entropy", jnp.float64)
    whole = fnmlp.train.per_example_grads(model, params, x, y, grad=grad)
    for chunk in (3, 1, 7, 50):  # 3 leaves a partial last chunk; 50 > B is all at once
        part = fnmlp.train.per_example_grads(model, params, x, y, grad=grad, chunk_size=chunk)
        for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(part)):
            assert a.shape == b.shape and a.shape[0] == 7
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-13, atol=1e-15)
    # the witness: each example's gradient is its own (examples differ)
    assert not np.allclose(np.asarray(whole[0]["w"][0]), np.asarray(whole[0]["w"][1]))


def test_estimate_is_b_copies_of_the_params():
    model = fnmlp.mlp([784, 1024, 1024, 10])
    params = model.init_params(jax.random.key(0))
    x = jax.ShapeDtypeStruct((4096, 784), jnp.float32)
    result, work = per_example_memory(params, x, "autodiff")
    p = 784 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10
    assert result == 4096 * p * 4  # ~28.4 GiB: the size the issue ran out of memory at
    assert work == 4096 * 784 * 4 + int(np.ceil(4096 * p * 4 * PER_EXAMPLE_WORK["autodiff"]))


model = fnmlp.mlp([30, 200, 10])  # _setup's network


def _setup(b):
    params = model.init_params(jax.random.key(0))  # 8,210 params, 32 KiB
    rng = np.random.default_rng(0)
    return params, rng.normal(size=(b, 30)).astype(np.float32), rng.integers(0, 10, b)


def test_impossible_size_is_refused_before_compiling(monkeypatch):
    params, x, y = _setup(3000)  # result: 3000 * 32,840 B = 94 MiB
    monkeypatch.setattr(_validate, "device_memory_available", lambda: 64 * 2**20)
    with compiled_programs() as names, pytest.raises(ValueError) as err:
        fnmlp.train.per_example_grads(model, params, x, y, chunk_size=10)
    assert names == []
    msg = str(err.value)
    assert "result alone" in msg and "examples per call" in msg, msg
    most = int(msg.split("at most about ")[1].split()[0])
    assert 0 < most < 3000


def test_too_big_at_once_suggests_a_chunk_size_that_fits(monkeypatch):
    params, x, y = _setup(3000)  # result 94 MiB; all at once ~56 MiB more working memory
    monkeypatch.setattr(_validate, "device_memory_available", lambda: int(150 * 2**20 / 0.8))
    with compiled_programs() as names, pytest.raises(ValueError, match="chunk_size=") as err:
        fnmlp.train.per_example_grads(model, params, x, y)
    assert names == []
    chunk = int(str(err.value).split("pass chunk_size=")[1].split()[0])
    assert 1 <= chunk < 3000
    g = fnmlp.train.per_example_grads(model, params, x, y, chunk_size=chunk)  # the advice works
    assert g[0]["w"].shape == (3000, 30, 200)
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1; got 0"):
        fnmlp.train.per_example_grads(model, params, x, y, chunk_size=0)


@pytest.mark.parametrize("grad", ["autodiff", "manual"])
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_per_example_grads_average_to_batch_grad(x64, grad, loss):
    key = jax.random.key(0)
    sizes = [3, 5, 2]
    model = fnmlp.mlp(sizes, "tanh")
    params = model.init_params(key, dtype=jnp.float64)
    x, y = random_batch(key, 7, sizes, loss, jnp.float64)
    pe = fnmlp.train.per_example_grads(model, params, x, y, loss, grad)
    assert pe[0]["w"].shape == (7, 3, 5)
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), pe)
    batch = jax.grad(fnmlp.loss, argnums=1)(model, params, x, y, loss)
    assert fnmlp.gradcheck.compare_grads(mean, batch, rtol=1e-12).passed
