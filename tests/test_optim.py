"""Optimizers and schedules: one step against values computed by hand, convergence on a
quadratic and on Rosenbrock, and input checks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_compiles

from fnmlp import optim, schedules

P = {"a": jnp.array([1.0, -2.0])}
G = {"a": jnp.array([0.5, 0.25])}


def _one_step(opt, params=P, grads=G):
    state = opt.init(params)
    updates, state = opt.update(grads, state, params)
    return np.asarray(optim.apply_updates(params, updates)["a"]), state


p, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
HAND = {
    # p - lr g
    "sgd": (optim.sgd(0.1), p - 0.1 * g),
    # first step of momentum: v = g
    "momentum": (optim.momentum(0.1, 0.9), p - 0.1 * g),
    # nesterov, first step: v = g, step = g + 0.9 v = 1.9 g
    "nesterov": (optim.nesterov(0.1, 0.9), p - 0.1 * 1.9 * g),
    # adam, first step: m_hat = g, v_hat = g^2 -> step = g / (|g| + eps)
    "adam": (optim.adam(0.1), p - 0.1 * g / (np.abs(g) + 1e-8)),
    # adamw adds the decoupled - lr wd p
    "adamw": (optim.adamw(0.1, weight_decay=0.5), p - 0.1 * g / (np.abs(g) + 1e-8) - 0.1 * 0.5 * p),
    # rmsprop, first step: v = 0.01 g^2 -> step = g / (0.1 |g| + eps)
    "rmsprop": (optim.rmsprop(0.1), p - 0.1 * g / (0.1 * np.abs(g) + 1e-8)),
    # coupled L2: g + wd p
    "sgd_l2": (optim.sgd(0.1, weight_decay=0.5), p - 0.1 * (g + 0.5 * p)),
    # adam with coupled L2: the decayed gradient goes through the moments
    "adam_l2": (optim.adam(0.1, weight_decay=0.5),
                p - 0.1 * np.sign(g + 0.5 * p)),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_one_step_by_hand(name):
    opt, want = HAND[name]
    got, state = _one_step(opt)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert int(state.count) == 1 and abs(float(state.learning_rate) - 0.1) < 1e-7


def test_momentum_second_step_by_hand():
    opt = optim.momentum(0.1, 0.9)
    state = opt.init(P)
    params = P
    g2 = {"a": jnp.array([-1.0, 2.0])}
    for grads in (G, g2):
        u, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, u)
    v2 = 0.9 * g + np.array([-1.0, 2.0])  # v = mu v + g
    np.testing.assert_allclose(np.asarray(params["a"]), p - 0.1 * g - 0.1 * v2, rtol=1e-6)


def test_adam_second_step_bias_correction_by_hand():
    opt = optim.adam(0.01, b1=0.9, b2=0.999, eps=1e-8)
    state, params = opt.init(P), P
    g2 = np.array([-1.0, 2.0])
    for grads in (G, {"a": jnp.asarray(g2)}):
        u, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, u)
    m = 0.9 * (0.1 * g) + 0.1 * g2
    v = 0.999 * (0.001 * g**2) + 0.001 * g2**2
    step2 = (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-8)
    want = p - 0.01 * g / (np.abs(g) + 1e-8) - 0.01 * step2
    np.testing.assert_allclose(np.asarray(params["a"]), want, rtol=1e-5)


def test_clip_by_global_norm():
    g = {"a": jnp.array([3.0]), "b": jnp.array([4.0])}
    c = optim.clip_grads_by_global_norm(g, 1.0)
    np.testing.assert_allclose([float(c["a"][0]), float(c["b"][0])], [0.6, 0.8], rtol=1e-6)
    same = optim.clip_grads_by_global_norm(g, 10.0)
    assert float(same["a"][0]) == 3.0
    opt = optim.sgd(1.0, clip_norm=1.0)
    got, _ = _one_step(opt, {"a": jnp.zeros(2)}, {"a": jnp.array([3.0, 4.0])})
    np.testing.assert_allclose(got, [-0.6, -0.8], rtol=1e-6)


def _run(opt, f, x0, steps):
    def body(carry, _):
        x, s = carry
        u, s = opt.update(jax.grad(f)(x), s, x)
        return (optim.apply_updates(x, u), s), None

    (x, _), _ = jax.lax.scan(body, (x0, opt.init(x0)), None, length=steps)
    return x


A = jnp.array([1.0, 10.0])
B = jnp.array([1.0, -2.0])


def quadratic(x):  # 0.5 x^T diag(A) x - b^T x, minimum at b / A
    return 0.5 * jnp.sum(A * x["x"] ** 2) - jnp.sum(B * x["x"])


def rosenbrock(x):  # minimum 0 at (1, 1)
    a, b = x["x"][0], x["x"][1]
    return (1 - a) ** 2 + 100 * (b - a * a) ** 2


QUAD = {"sgd": optim.sgd(0.05), "momentum": optim.momentum(0.02), "nesterov": optim.nesterov(0.02),
        "adam": optim.adam(0.05), "adamw": optim.adamw(0.05, weight_decay=0.0),
        "rmsprop": optim.rmsprop(1e-3)}
ROSEN = {"sgd": (optim.sgd(1e-3), 60000), "momentum": (optim.momentum(2e-4), 30000),
         "nesterov": (optim.nesterov(2e-4), 30000), "adam": (optim.adam(0.01), 20000),
         "adamw": (optim.adamw(0.01, weight_decay=0.0), 20000),
         "rmsprop": (optim.rmsprop(1e-3), 30000)}


@pytest.mark.parametrize("name", sorted(QUAD))
def test_converges_on_quadratic(name):
    x = _run(QUAD[name], quadratic, {"x": jnp.array([5.0, 5.0])}, 6000)
    np.testing.assert_allclose(np.asarray(x["x"]), np.asarray(B / A), atol=2e-3)


@pytest.mark.parametrize("name", sorted(ROSEN))
def test_converges_on_rosenbrock_from_standard_start(name):
    opt, steps = ROSEN[name]
    x = _run(opt, rosenbrock, {"x": jnp.array([-1.2, 1.0])}, steps)
    assert float(rosenbrock(x)) < 1e-3, (name, np.asarray(x["x"]))
    np.testing.assert_allclose(np.asarray(x["x"]), [1.0, 1.0], atol=0.05)


def test_schedule_drives_the_optimizer():
    opt = optim.sgd(schedules.step_decay(1.0, step_size=1, rate=0.5))
    state, params = opt.init(P), P
    for _ in range(3):
        u, state = opt.update(G, state, params)
        params = optim.apply_updates(params, u)
    # rates 1, 0.5, 0.25
    np.testing.assert_allclose(np.asarray(params["a"]), p - 1.75 * g, rtol=1e-6)
    assert float(state.learning_rate) == 0.25


@pytest.mark.parametrize("make", [
    lambda: optim.sgd(0.0), lambda: optim.sgd(-1.0), lambda: optim.sgd(math.nan),
    lambda: optim.sgd(math.inf), lambda: optim.sgd(0.1, momentum=1.0),
    lambda: optim.sgd(0.1, nesterov=True), lambda: optim.adam(0.1, b1=1.0),
    lambda: optim.adam(0.1, eps=0), lambda: optim.rmsprop(0.1, decay=-0.1),
    lambda: optim.sgd(0.1, weight_decay=-1), lambda: optim.sgd(0.1, clip_norm=0),
    lambda: optim.get_optimizer("adagrad", 0.1), lambda: optim.sgd("0.1"),
    lambda: schedules.cosine_warmup(1.0, 10, 5), lambda: schedules.step_decay(1.0, 0),
])
def test_bad_hyperparameters(make):
    with pytest.raises(ValueError):
        make()


def test_set_learning_rate_keeps_the_jitted_step_compiled_once():
    opt = optim.adam(0.1)

    def step(g, s, p):
        return opt.update(g, s, p)

    step = jax.jit(step)
    state = opt.init(P)
    with count_compiles("step") as compiles:
        _, state = step(G, state, P)
        state = optim.set_learning_rate(state, 0.01)
        u, state = step(G, state, P)
    assert len(compiles) == 1
    assert float(state.learning_rate) == pytest.approx(0.01)
