"""Many models in one program: ``K`` models trained side by side by ``vmap`` over the state.

Shapes: ``K`` members, ``N`` examples, ``B`` batch, ``D`` features, ``C`` outputs.

The members share the architecture (the model, any :class:`~fnmlp.layers.Layer`), the
batch size, the loss and the optimizer's kind; each has its own **learning rate**,
**weight decay** and **seed** (the seed draws its initial params,
``model.init_params(key(seed), D)``, its shuffles,
``fold_in(key(seed), epoch)``, and its dropout masks, exactly as :func:`fnmlp.fit` with
that seed does; evaluation runs without dropout). The
training state is a :class:`~fnmlp.train.TrainState` whose every leaf has a leading axis
``K``; the epoch is :func:`fnmlp.train.epoch_fn` ``vmap``ped over that axis, so one
compiled program runs the whole population, and learning rates and weight decays are
arrays in the optimizer state (nothing recompiles when they change).

* :func:`fit_population` trains, evaluates every member on validation data each epoch,
  keeps one history per member and names the best (lowest final validation loss, or
  training loss); a member that diverges is marked and the others go on. Its epoch loop
  is :func:`fnmlp.train.run_epochs`, the one ``fit`` runs, and its data are checked as
  ``fit`` checks them (:func:`fnmlp.train.fit.check_training_data`).
* :func:`ensemble_predict_proba` averages the members' probabilities.
* With ``mesh=make_mesh(n)`` the population axis is **sharded over the devices**: each
  device trains ``K / n`` members on a full copy of the data. (Data-parallel training of
  each member, ``fit(mesh=...)``, is the other way to use several devices; the two do
  not combine in one call, since the mesh is one-dimensional.)

Member ``k`` equals ``fit`` with its config up to float32 round-off: ``vmap`` turns the
member's matrix products into batched products, which XLA may sum in another order
(tested: within 1e-5 after several epochs on CPU, for every optimizer, with weight decays
of 0, the optimizer's default and more). The shared optimizer is built with every
hyperparameter given (:func:`shared_optimizer`), so no member inherits a default it did
not ask for. With ``dtype=float64`` (the default for float64 data under
``jax_enable_x64``) the members train in float64 and equal a float64 ``fit`` within 1e-12.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from fnmlp import _validate as checks
from fnmlp._checks import check_float_dtype, check_seed
from fnmlp._names import SEED_LIMIT
from fnmlp.compile_cache import CompileTimer
from fnmlp.layers import Layer
from fnmlp.losses import Loss
from fnmlp.optim import (
    GradientTransformation,
    check_optimizer,
    get_optimizer,
    set_learning_rate,
    set_weight_decay,
)
from fnmlp.optim.base import unusable_rate
from fnmlp.parallel import AXIS, put, replicated
from fnmlp.prediction import kind_of, model_and_loss, probabilities
from fnmlp.train.fit import check_batch_size, check_training_data, check_validation_data
from fnmlp.train.loop import EpochLog, epoch_record, run_epochs
from fnmlp.train.step import TrainState, epoch_fn, eval_fn, fresh_state, train_step

Array = jax.Array
SWEEP_KEYS = {"lr": "learning rate", "wd": "weight decay", "seed": "seed"}


class Member(NamedTuple):
    """One member's hyperparameters."""

    lr: float
    wd: float = 0.0
    seed: int = 0


def grid(lr: Sequence[float] = (1e-3,), wd: Sequence[float] = (0.0,),
         seed: Sequence[int] = (0,)) -> list[Member]:
    """Every combination of the given values (learning rate slowest, seed fastest).

    Raises:
      ValueError: a seed outside the one seed rule (:func:`fnmlp._checks.check_seed`):
        ``int()`` turned 1.5 into 1 and True into 1 silently.
    """
    seeds = [check_seed(c, "seed") for c in seed]
    return [Member(float(a), float(b), c) for a, b, c in itertools.product(lr, wd, seeds)]


def parse_sweep(specs: Sequence[str], defaults: Member) -> list[Member]:
    """``["lr=1e-3,3e-3", "seed=0,1"]`` -> the grid of members; keys ``lr``, ``wd``,
    ``seed``; a key not given takes ``defaults``. Bad specs raise ``ValueError``."""
    values: dict[str, list] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        if not sep or key not in SWEEP_KEYS:
            raise ValueError(f"--sweep entries must be KEY=V1,V2,... with KEY one of"
                             f" {sorted(SWEEP_KEYS)}; got {spec!r}")
        if key in values:
            raise ValueError(f"--sweep gives {key} twice; give it once with all its values")
        items = [t.strip() for t in text.split(",")]
        if not text.strip() or any(t == "" for t in items):
            raise ValueError(f"--sweep {key}= needs a comma list of values with no empty"
                             f" entries; got {spec!r}")
        try:
            parsed = [int(t) if key == "seed" else float(t) for t in items]
        except ValueError:
            kind = "integers" if key == "seed" else "numbers"
            raise ValueError(f"--sweep {key}= values must be {kind}; got {spec!r}") from None
        for v in parsed:
            bad = (key == "lr" and not (math.isfinite(v) and v > 0)) or (
                key == "wd" and not (math.isfinite(v) and v >= 0)) or (
                key == "seed" and not 0 <= v < SEED_LIMIT)
            if bad:
                want = {"lr": "> 0", "wd": ">= 0", "seed": "integers in [0, 2**32)"}[key]
                raise ValueError(f"--sweep {key} values must be {want}; got"
                                 f" {v if key == 'seed' else format(v, 'g')}")
        values[key] = parsed
    return grid(values.get("lr", [defaults.lr]), values.get("wd", [defaults.wd]),
                values.get("seed", [defaults.seed]))


class PopulationResult(NamedTuple):
    params: Any  # the members' final params, every leaf [K, ...]
    state: TrainState  # the final states, every leaf [K, ...]
    members: list[Member]
    history: list[list[dict]]  # history[k]: one dict per epoch for member k
    best: int  # index of the member with the lowest final monitored loss
    monitor: str  # "val_loss", "test_loss" (validation_name="test") or "train_loss"
    base_lr: Any = None  # [K]: each member's rate as the program held it (lr_factor scales it)

    def member_params(self, k: int) -> Any:
        """Member ``k``'s params, an ordinary params pytree; ``ValueError`` for a ``k``
        outside ``[-K, K)`` (JAX would clamp it to the last member)."""
        return take(self.params, check_member_index(k, len(self.members)))


def check_member_index(k: Any, count: int, name: str = "member") -> int:
    """``k`` as an int in ``[0, count)`` (negative counts from the end, as Python);
    ``ValueError`` naming it otherwise. On the host: JAX clamps out-of-range indices on
    device (jax #4383), so member 7 of 3 would silently be member 2."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name} must be an integer index; got {k!r}")
    if not -count <= k < count:
        raise ValueError(f"{name} {int(k)} is out of range for a population of {count}"
                         f" members (valid: 0..{count - 1})")
    return int(k) % count


def take(stacked: Any, k: int) -> Any:
    """Member ``k`` of a stacked pytree (every leaf indexed on its leading axis)."""
    return jax.tree.map(lambda a: a[k], stacked)


def stack(trees: Sequence[Any]) -> Any:
    """Stacks pytrees of the same structure along a new leading axis ``K``."""
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def memory_estimate(sizes: Sequence[int], members: int, batch_size: int, n: int,
                    optimizer: str, itemsize: int = 4) -> int:
    """Bytes the population needs, roughly: params, gradients and optimizer moments per
    member, activations of one step per member, and the data (``itemsize`` bytes a
    number)."""
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    moments = {"adam": 2, "adamw": 2, "rmsprop": 1, "momentum": 1, "nesterov": 1}.get(
        optimizer, 0)
    per_member = itemsize * (n_params * (3 + moments) + 3 * batch_size * sum(sizes))
    return members * per_member + itemsize * n * (sizes[0] + 1)


def input_width_of(model: Layer, x: Any) -> int:
    """The input width: the model's own (``mlp([D, ...])``), else ``x``'s."""
    if getattr(model, "in_features", None) is not None:
        return model.in_features
    if np.ndim(x) != 2:
        raise ValueError(f"x must have 2 dimensions [N, D]; got shape {np.shape(x)}")
    return int(np.shape(x)[-1])


def _widths(template: Any, d_in: int) -> list[int]:
    """``[D, ...]`` and the output width of every 2-D (dense) weight: a proxy of the
    activations one step keeps, for :func:`memory_estimate`."""
    return [d_in] + [int(a.shape[-1]) for a in jax.tree.leaves(template) if len(a.shape) == 2]


def fit_population(
    model: Layer,
    x: Any,
    y: Any,
    members: Sequence[Member],
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: str = "adam",
    loss: str | Loss = "softmax_cross_entropy",
    grad: str = "manual",
    validation_data: tuple[Any, Any] | None = None,
    lr_factor: Callable[[Array], Array] | None = None,
    mesh: Any = None,
    verbose: bool = True,
    on_epoch_end: Callable[[int, list[dict]], None] | None = None,
    log: Any = None,
    dtype: Any = None,
    sample_weight: Any = None,
    class_weight: Any = None,
    weight_decay_mask: Callable | None = None,
    validation_name: str = "val",
) -> PopulationResult:
    """Trains ``len(members)`` models of the same architecture in one compiled program.

    Args:
      model: a :class:`~fnmlp.layers.Layer`, the architecture of every member
        (``mlp([D, H, C], "relu")``); dropout runs in training only.
      x, y: training data ``[N, D]`` and labels/targets, shared.
      members: one :class:`Member` (``lr``, ``wd``, ``seed``) per model; see :func:`grid`.
      epochs, batch_size, optimizer, loss, grad: as :func:`fnmlp.fit`
        (``optimizer`` is a name).
      validation_data: ``(x_val, y_val)`` evaluated for every member after every epoch.
      validation_name: the prefix of its scores in the records, the log line and the
        monitored loss (``"val"``: ``val_loss``); ``"test"`` when ``validation_data`` is a
        test set (the scripts without ``--val-split``), so no test score reads as a
        validation one.
      lr_factor: optional ``count -> factor``: member ``k``'s rate at update ``count`` is
        ``lr_k * lr_factor(count)`` (e.g. a cosine decay of every member's own rate). A
        member whose rate an epoch ends at is not finite, or below 0 (fit's rule,
        :func:`fnmlp.optim.base.unusable_rate`, on the lowest rate of the epoch's updates),
        is marked ``"diverged"`` from then on, as
        one whose params turned non-finite, and is never the best.
      mesh: a 1-D mesh: the members are sharded over its devices (``K`` must divide).
      verbose: one line per epoch (the best member's).
      on_epoch_end: ``callback(epoch, records)`` with one record per member.
      dtype: the members' float dtype (params, optimizer arithmetic, data); default the
        data's float dtype, at least float32 (float64 data trains in float64 when
        ``jax_enable_x64`` is on, as ``fit`` follows its params): see
        :func:`population_dtype`.
      sample_weight, class_weight: as :func:`fnmlp.fit`, shared by every member (the
        weighted mean loss per minibatch; validation unweighted).
      weight_decay_mask: the leaves a member's ``wd`` decays, as the optimizers' ``mask=``
        (``fnmlp.optim.matrices_only``: the weight matrices alone, what the scripts'
        ``--weight-decay`` and ``--sweep wd=`` do); None, every leaf (PyTorch's).

    Returns:
      :class:`PopulationResult`; :func:`member_hyperparameters` reads what each member
      trained with back from its state.

    Raises:
      ValueError: a bad argument (naming it, what was expected and what arrived), before
        anything compiles.
    """
    net, lossdef = checks.check_config(model, loss, grad)
    d_in = input_width_of(net, x)
    members = [m if isinstance(m, Member) else Member(*m) for m in members]
    k = len(members)
    if k == 0:
        raise ValueError("members must list at least one member; got none")
    epochs = checks.check_positive_int(epochs, "epochs")
    for m in members:
        checks.check_positive_float(m.lr, "member lr")
        checks.check_positive_float(m.wd, "member wd", allow_zero=True)
        check_seed(m.seed, "member seed")
    factor0 = 1.0 if lr_factor is None else _first_factor(lr_factor)
    if unusable_rate(factor0):  # fit's rule at step 0 (a schedule's first rate)
        raise ValueError(f"lr_factor gives {factor0:g} at step 0; a learning-rate factor must"
                         " be finite and >= 0 (a negative rate climbs the loss)")
    dtype = population_dtype(dtype, x)
    template = jax.eval_shape(lambda: net.init(jax.random.key(0), d_in, dtype)[1])  # shapes
    x, y, w, io_widths = check_training_data(net, lossdef, template, x, y, sample_weight,
                                             class_weight)  # w: [N] or None
    batch_size = check_batch_size(batch_size, len(x))
    validation_data = check_validation_data(net, lossdef, template, validation_data, io_widths)
    widths = _widths(template, d_in)
    need = memory_estimate(widths, k, batch_size, len(x), optimizer, dtype.itemsize)
    have = checks.available_memory()
    if need > 0.8 * have:
        raise ValueError(f"a population of {k} members of {widths} needs about"
                         f" {need / 2**30:.1f} GiB; {have / 2**30:.1f} GiB are available:"
                         " give fewer members")
    if mesh is not None and k % mesh.devices.size:
        raise ValueError(f"the number of members must be divisible by the"
                         f" {mesh.devices.size} devices of the mesh; got {k}")

    if weight_decay_mask is not None and not callable(weight_decay_mask):
        raise ValueError("weight_decay_mask must be a predicate mask(path, leaf) -> bool such"
                         f" as fnmlp.optim.matrices_only, or None; got {weight_decay_mask!r}")
    pop = build_population(net, d_in, members, batch_size, optimizer, lossdef, grad, lr_factor,
                           mesh, dtype, weight_decay_mask)
    state, seeds, base_lr, epoch, evaluate = (pop.state, pop.seeds, pop.base_lr, pop.epoch,
                                              pop.evaluate)
    if mesh is not None:
        x, y, w, validation_data = put((x, y, w, validation_data), replicated(mesh))

    history: list[list[dict]] = [[] for _ in members]
    first_lr = [float(m.lr) * factor0 for m in members]  # each member's first rate
    alive = np.ones(k, bool)
    if validation_name not in ("val", "test"):
        raise ValueError(f"validation_name must be 'val' or 'test'; got {validation_name!r}")
    monitor = f"{validation_name}_loss" if validation_data is not None else "train_loss"
    examples = k * (len(x) // batch_size) * batch_size  # trained per epoch, all members

    def run_epoch(state, e):
        t0 = time.perf_counter()
        with CompileTimer() as compiling:
            state, m = epoch(state, x, y, seeds, base_lr, w)
            m = jax.device_get(m)
        seconds = time.perf_counter() - t0
        v = jax.device_get(evaluate(state.params, *validation_data)) if (
            validation_data is not None) else {}
        records = []
        for i in range(k):
            r = epoch_record(e, {name: val[i] for name, val in m.items()}, seconds, examples,
                             compiling.seconds)
            r.update({f"{validation_name}_{name}": float(val[i]) for name, val in v.items()})
            before = history[i][-1]["learning_rate"] if history[i] else float(first_lr[i])
            alive[i] &= (bool(m["params_finite"][i]) and math.isfinite(r["train_loss"])
                         and not unusable_rate(float(m["lowest_learning_rate"][i]), before))
            r["diverged"] = not alive[i]
            history[i].append(r)
            records.append(r)
        return state, records

    def fmt(records):
        b = _best(history, alive, monitor)
        rb = history[b][-1]
        return (f"epoch {rb['epoch']}/{epochs}  {k} members, {int(alive.sum())} finite  best"
                f" #{b} ({_describe(members[b])}) loss {rb['train_loss']:.4f}"
                + (f"  {monitor} {rb[monitor]:.4f}" if monitor != "train_loss" else "")
                + f"  {rb['examples_per_second']:,.0f} ex/s in all")

    callback = None if on_epoch_end is None else (
        lambda s, records: on_epoch_end(records[0]["epoch"], records))
    state, _ = run_epochs(run_epoch, state, epochs, start=0, on_epoch_end=callback,
                          log=EpochLog(epochs, 1, log, fmt) if verbose else None)
    return PopulationResult(state.params, state, members, history,
                            _best(history, alive, monitor), monitor, base_lr)


class Population(NamedTuple):
    """A population's compiled program and its starting point (:func:`make_population`)."""

    epoch: Callable  # (state, x, y, seeds, base_lr, w=None) -> (state, metrics [K]); donated
    evaluate: Callable  # (params [K, ...], x, y) -> {"loss": [K], ...}
    state: TrainState  # every leaf [K, ...]
    seeds: Array  # [K] uint32: member k shuffles with fold_in(key(seeds[k]), epoch)
    base_lr: Array  # [K]: each member's learning rate


def make_population(model: Layer, d_in: int | None, members: Sequence[Member], *,
                    batch_size: int, optimizer: str = "adam",
                    loss: str | Loss = "softmax_cross_entropy", grad: str = "manual",
                    lr_factor: Callable | None = None, mesh: Any = None,
                    dtype: Any = jnp.float32,
                    weight_decay_mask: Callable | None = None) -> Population:
    """The jitted population epoch and evaluation, and the stacked initial state (placed
    on ``mesh``, members spread over its devices, when given; params in ``dtype``) for
    ``model`` on inputs of width ``d_in`` (None: the model's own). No checks: see
    :func:`fit_population` (but the model, loss and gradient path, before anything
    compiles)."""
    net, lossdef = checks.check_config(model, loss, grad)
    return build_population(net, d_in, members, batch_size, optimizer, lossdef, grad,
                            lr_factor, mesh, dtype, weight_decay_mask)


def build_population(net: Layer, d_in: int | None, members: Sequence[Member],
                     batch_size: int, optimizer: str, loss: Loss, grad: str,
                     lr_factor: Callable | None = None, mesh: Any = None,
                     dtype: Any = jnp.float32,
                     weight_decay_mask: Callable | None = None) -> Population:
    """:func:`make_population` for arguments already checked (the loss a Loss value)."""
    d_in = d_in if d_in is not None else net.in_features
    opt = shared_optimizer(optimizer, members, weight_decay_mask)
    states = []
    for m in members:
        params = net.init_params(jax.random.key(m.seed), d_in, dtype)
        if not states:
            check_optimizer(opt, params)  # once: every member has the same shapes
        states.append(member_state(params, opt, m))
    state = stack(states)
    check_members_state(state.opt_state, members)
    seeds = np.asarray([m.seed for m in members], np.uint32)  # [K]; keys made inside
    base_lr = jnp.array(state.opt_state.learning_rate, copy=True)  # [K]; not donated
    member_epoch = _epoch_with_factor(train_step(net, opt, loss, grad), batch_size, lr_factor)

    def population_epoch(state, x, y, seeds, base_lr, w=None):  # state's leaves [K, ...]
        keys = jax.vmap(jax.random.key)(seeds)  # as fit's key(seed)
        return jax.vmap(member_epoch, in_axes=(0, None, None, 0, 0, None))(
            state, x, y, keys, base_lr, w)  # w [N] shared by the members

    evaluate = jax.vmap(eval_fn(net, loss, 1024), in_axes=(0, None, None))
    if mesh is None:
        return Population(jax.jit(population_epoch, donate_argnums=0), jax.jit(evaluate),
                          state, jnp.asarray(seeds), base_lr)
    # members spread over the devices; metrics gathered (readable on every host)
    spread, rep = NamedSharding(mesh, P(AXIS)), replicated(mesh)
    state, seeds, base_lr = put((state, seeds, base_lr), spread)
    return Population(jax.jit(population_epoch, donate_argnums=0, out_shardings=(spread, rep)),
                      jax.jit(evaluate, out_shardings=rep), state, seeds, base_lr)


# ------------------------------------------------------ each member trains as it asked


def shared_optimizer(optimizer: str, members: Sequence[Member],
                     weight_decay_mask: Callable | None = None) -> GradientTransformation:
    """The one optimizer of the population's program, built with every hyperparameter a
    member sets given explicitly (``weight_decay`` too, even when every member's is 0), so
    no member inherits the optimizer's own default (``adamw``'s ``weight_decay=1e-2``).

    The build values (``max`` over the members) only decide which terms the program
    computes (a decay term when some member's ``wd > 0``); each member's own values are
    arrays in its state (:func:`member_state`). A member with ``wd == 0`` in a program
    with the decay term adds ``0 * p``: exactly what ``fit`` without decay computes.
    ``weight_decay_mask`` is the optimizer's ``mask=`` (which leaves decay).
    """
    return get_optimizer(optimizer, max(m.lr for m in members),
                         weight_decay=max(m.wd for m in members), mask=weight_decay_mask)


def member_state(params: Any, opt: GradientTransformation, member: Member) -> TrainState:
    """Member ``member``'s fresh state: ``params`` and ``opt``'s state holding the member's
    learning rate and weight decay (arrays in the params' float dtype)."""
    s = fresh_state(params, opt)
    o = set_weight_decay(set_learning_rate(s.opt_state, member.lr), member.wd)
    return s._replace(opt_state=o)


def check_members_state(opt_state: Any, members: Sequence[Member]) -> None:
    """Reads every member's learning rate and weight decay back from the stacked optimizer
    state (``[K]`` arrays) and raises ``RuntimeError`` unless each is the member's own
    value, rounded to the state's dtype."""
    for field, name in (("learning_rate", "lr"), ("weight_decay", "wd")):
        held = np.asarray(jax.device_get(getattr(opt_state, field)))  # [K]
        want = np.asarray([getattr(m, name) for m in members], held.dtype)
        if held.shape != want.shape or not np.array_equal(held, want):
            raise RuntimeError(f"the population's optimizer state holds {field} {held.tolist()}"
                               f" but the members ask for {want.tolist()}")


def member_hyperparameters(result: PopulationResult) -> list[dict]:
    """What each member trained with, read from the state that trained: ``{"lr": ...,
    "weight_decay": ...}`` per member, from the ``[K]`` base rates the program scaled
    (``result.base_lr``; the state's ``learning_rate`` when absent) and the optimizer
    state's ``weight_decay`` array, each written as the shortest decimal that reads back
    to the held value in its dtype."""
    o = result.state.opt_state
    lr = np.asarray(jax.device_get(o.learning_rate if result.base_lr is None
                                   else result.base_lr))  # [K], the state's dtype
    wd = np.asarray(jax.device_get(o.weight_decay))  # [K]
    # str of a float32 scalar: the shortest decimal that reads back to it (0.01, not
    # 0.009999999776482582); float64 values are exact
    return [{"lr": float(str(a)), "weight_decay": float(str(b))} for a, b in zip(lr, wd)]


def _first_factor(lr_factor: Any) -> float:
    """``lr_factor(0)`` as a float; ``ValueError`` naming ``lr_factor`` unless it is a
    callable giving one real number (a ``[3]`` array, ``[1]`` or None failed in NumPy)."""
    if not callable(lr_factor):
        raise ValueError(f"lr_factor must be a function count -> factor; got {lr_factor!r}")
    value = jax.device_get(lr_factor(np.int32(0)))
    if np.shape(value) != () or np.asarray(value).dtype.kind not in "iuf":
        raise ValueError(f"lr_factor must return one real number per count; lr_factor(0)"
                         f" gave {value!r}"[:200])
    return float(value)


def population_dtype(dtype: Any, x: Any) -> np.dtype:
    """The float dtype a population's params, optimizer arithmetic and data take.

    ``dtype`` when given (float64 needs ``jax_enable_x64``, as ``fit``'s float64 params
    do); else the data's float dtype and at least float32 (float64 data trains in float64
    when x64 is on, as ``fit`` follows its params); float32 otherwise.

    Raises:
      ValueError: ``dtype`` is not a float dtype, or float64 is asked with x64 off.
    """
    if dtype is None:
        try:
            have = jnp.dtype(getattr(x, "dtype", None) or np.asarray(x).dtype)
        except (TypeError, ValueError):  # not an array: check_batch says so later
            have = jnp.dtype(jnp.float32)
        wide = jnp.promote_types(jnp.float32, have) if jnp.issubdtype(
            have, jnp.floating) else jnp.dtype(jnp.float32)
        return jnp.dtype(jax.dtypes.canonicalize_dtype(wide))
    return check_float_dtype(dtype, "dtype")


def _epoch_with_factor(step, batch_size, lr_factor):
    """The member's epoch ``(state, x, y, key, base_lr, w=None)``; with ``lr_factor`` the
    rate is set to ``base_lr * lr_factor(count)`` before every step."""
    if lr_factor is None:
        run = epoch_fn(step, batch_size, contiguous=False)
        return lambda state, x, y, key, base_lr, w=None: run(state, x, y, key, w)

    def epoch(state, x, y, key, base_lr, w=None):
        def scheduled(s, batch, key=None):
            o = s.opt_state
            rate = (base_lr * lr_factor(o.count)).astype(o.learning_rate.dtype)
            return step(s._replace(opt_state=o._replace(learning_rate=rate)), batch, key)

        return epoch_fn(scheduled, batch_size, contiguous=False)(state, x, y, key, w)

    return epoch


def _best(history, alive, monitor) -> int:
    finals = [h[-1][monitor] if alive[i] and h else math.inf for i, h in enumerate(history)]
    return int(np.argmin(finals)) if np.isfinite(np.min(finals)) else 0


def _describe(m: Member) -> str:
    return f"lr {m.lr:g}, wd {m.wd:g}, seed {m.seed}"


def ensemble_predict_proba(model: Layer, stacked_params: Any, x: Any,
                           loss: str | Loss | None = None,
                           members: Sequence[int] | None = None
                           ) -> Array:
    """The mean of the members' class probabilities ``[N, C]``.

    Args:
      model: the members' architecture (a Layer).
      stacked_params: every leaf with a leading member axis ``K``.
      x: inputs ``[N, D]``, checked once; every member's forward runs in one program.
      loss: as :func:`fnmlp.predict_proba` (a model ending in Softmax: its output is
        averaged as it is; otherwise softmax, or sigmoid for ``sigmoid_cross_entropy``).
      members: indices of a subset, each in ``[-K, K)``.

    Raises:
      ValueError: a member index out of range (JAX would clamp it), a loss that does not
        take the model's output, or bad ``x``.
    """
    model, lossdef = model_and_loss(model, loss)  # the loss against its output, before any work
    count = len(jax.tree.leaves(stacked_params)[0])
    if members is None:
        chosen = stacked_params
    else:
        idx = [check_member_index(i, count, "members entry") for i in members]
        if not idx:
            raise ValueError("members must list at least one member index; got none")
        chosen = jax.tree.map(lambda a: a[np.asarray(idx, np.int32)], stacked_params)
    x = checks.check_x(model, take(chosen, 0), x, checked=True)
    out = _members_forward(model)(chosen, x)  # [K, N, C], evaluation mode
    kind = kind_of(model, lossdef, out.shape[-1])
    return jnp.mean(probabilities(out, model.outputs, kind), axis=0)


@functools.lru_cache(maxsize=32)
def _members_forward(model):
    """Every member's evaluation-mode forward in one program: ``vmap`` over the members."""
    return jax.jit(jax.vmap(model.apply, in_axes=(0, None)))
