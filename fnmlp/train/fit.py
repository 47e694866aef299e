"""``fit`` and ``evaluate``: sugar over the epoch loop of :mod:`.loop`.

Shapes: ``N`` examples, ``D`` features, ``C`` outputs.

:func:`fit` checks every argument once, on the host (:func:`check_fit`, into values the
kernels trust: the loss a :class:`~fnmlp.losses.Loss`, the data arrays, the optimizer),
then runs :func:`fnmlp.train.loop.run_epochs` with the pieces it needs: a compiled epoch
(:func:`~fnmlp.train.loop.train_epoch`), validation, early stopping
(:class:`~fnmlp.train.loop.Patience`, its bookkeeping carried in
:attr:`TrainState.early`, so a resumed run keeps exactly what an uninterrupted one keeps)
and the log. :func:`fnmlp.population.fit_population` runs the same loop and shares the
data checks (:func:`check_training_data`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from fnmlp import _validate as checks
from fnmlp._checks import check_seed
from fnmlp.data import train_test_split
from fnmlp.grad import Params
from fnmlp.layers import Layer
from fnmlp.losses import Loss
from fnmlp.optim import (
    GradientTransformation,
    check_optimizer,
    get_learning_rate,
    get_optimizer,
    host_scalar,
)
from fnmlp.parallel import place_on_mesh
from fnmlp.scaling import warn_input_range
from fnmlp.train.loop import (
    EpochLog,
    Patience,
    TrainingDiverged,
    epoch_record,
    format_record,
    run_epochs,
    track_best,
    train_epoch,
    validate,
)
from fnmlp.train.step import (
    TrainState,
    cached_trainer,
    check_compute_dtype,
    fresh_state,
    jitted_eval,
)
from fnmlp.weights import check_weights

Array = jax.Array
__all__ = ["FitResult", "FitRun", "TrainingDiverged", "check_fit", "check_resumed_state",
           "choose_optimizer", "epoch_record", "evaluate", "fit", "fit_result",
           "format_record", "resumed_state", "run_epochs", "track_best"]


class FitResult(NamedTuple):
    params: Params  # the best params when early stopping restored them, else the last
    state: TrainState  # the final training state (resume from it)
    history: list  # one dict per epoch; early stopping marks the restored one "restored"
    best_epoch: int  # 1-based epoch whose params were returned
    best_state: TrainState | None = None  # with early stopping: the state of best_epoch


def fit(
    model: Layer,
    params: Params,
    x: Any,
    y: Any,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    optimizer: str | GradientTransformation = "sgd",
    learning_rate: float | None = None,
    loss: str | Loss = "softmax_cross_entropy",
    grad: str = "manual",
    seed: int = 0,
    validation_split: float | None = None,
    validation_data: tuple[Any, Any] | None = None,
    patience: int | None = None,
    state: TrainState | None = None,
    verbose: bool = True,
    on_epoch_end: Callable[[TrainState, dict], None] | None = None,
    compute_dtype: Any = None,
    mesh: Any = None,
    log: Any = None,
    sample_weight: Any = None,
    class_weight: Any = None,
    log_every: int = 1,
) -> FitResult:
    """Trains a model with minibatch gradient descent; every input is checked first.

    Args:
      model: a :class:`~fnmlp.layers.Layer` (``mlp([D, H, C], "relu")``,
        ``serial(Dense(64), Tanh(), Dropout(0.2), Dense(10))``); dropout is on in
        training only.
      params: initial params (``model.init_params(key)``).
      x: inputs ``[N, D]``; y: labels ``[N]`` or targets ``[N, C]``.
      epochs: the epoch to train up to (a resumed ``state`` continues from its epoch;
        ``epochs`` not above the state's epoch is refused, unless the run stopped early,
        which trains nothing and says so).
      batch_size: minibatch size, 1..N (the partial last batch is dropped each epoch).
      optimizer: a name from :data:`fnmlp.optim.OPTIMIZERS` or a GradientTransformation
        (its state must hold ``learning_rate``: see :mod:`fnmlp.optim`).
      learning_rate: for an optimizer given by name (a number or a schedule). **One
        rule, fresh and resumed** (:func:`choose_optimizer`): a rate asked for is
        applied, ``learning_rate=`` with a name or the rate (or schedule) a
        GradientTransformation was built with, replacing
        a resumed state's, as the scripts' ``--lr`` does. A name alone trains at the
        optimizer's own default (:func:`fnmlp.optim.default_learning_rate`: ``adam`` and
        ``adamw`` 1e-3, ``rmsprop`` 1e-2, ``sgd`` 0.1) when fresh, and keeps the state's
        rate on resume. Both a GradientTransformation and ``learning_rate=`` are two rates
        for one run: refused (``ValueError``).
      loss: a loss name or a :class:`~fnmlp.losses.Loss`; it must take what the model
        outputs (logits, or probabilities after a final ``Softmax``): a mismatch is
        refused before anything compiles.
      grad: ``"manual"`` or ``"autodiff"``.
      seed: shuffling and dropout seed; epoch ``e`` shuffles with
        ``fold_in(key(seed), e)``.
      validation_split: hold out this fraction (seeded, before training) for validation.
      validation_data: or an explicit ``(x_val, y_val)``.
      patience: early stopping: stop after this many epochs without improvement of the
        validation loss (training loss when there is no validation) and return the best
        params (``best_state`` holds that epoch's whole state; its history record gets
        ``"restored": True``). The best value, its epoch and state and the wait travel
        in ``state.early``: resuming continues the count, and resuming a run that stopped
        trains nothing (it says so). Resuming such a state *without* ``patience`` trains
        on without early stopping: the returned state drops ``early``, so it, its
        checkpoint and ``load_model`` hold the params returned (the last). A state that
        tracked the training loss resumed with validation data (or the reverse) is
        refused: the two losses cannot be compared.
      state: a :class:`TrainState` to resume from (e.g. from a checkpoint, or the
        ``.state`` of an earlier FitResult); it is left intact (the compiled epoch donates
        nothing), so a resume loop ``r = fit(..., state=r.state)`` compiles and deletes
        nothing.
      verbose: print one line per epoch (through ``log``, default stderr), after
        ``on_epoch_end``, so entries it adds are printed too.
      log_every: with ``verbose``, print only epochs 1, every ``log_every``-th and the
        last (the early-stopping message always).
      on_epoch_end: ``callback(state, record)`` after each epoch (e.g. to checkpoint; it
        may add entries to ``record``, which is the history's dict).
      compute_dtype: mixed precision compute dtype (e.g. ``jnp.bfloat16``).
      mesh: a 1-D ``jax.sharding.Mesh`` for data-parallel training (``fnmlp.parallel``).
      sample_weight: ``[N]`` weights of the training examples, finite and >= 0 (Keras's
        and scikit-learn's name).
      class_weight: ``"balanced"`` (scikit-learn's ``n_samples / (n_classes * count)``,
        counted on the training part) or ``{label: weight}`` (unlisted classes weigh 1);
        classification losses only. Both given: an example weighs
        ``sample_weight_i * class_weight[y_i]``, as Keras. Each minibatch's loss is then
        the weighted mean ``sum w_i loss_i / sum w_i`` (PyTorch's weighted
        ``CrossEntropyLoss``), on both gradient paths, and with ``mesh``; the epoch's
        ``train_loss`` is ``sum(w l) / sum(w)`` over the epoch. The validation loss stays
        unweighted (as Keras's ``class_weight``, "during training only"); with
        ``validation_split`` the held-out examples' weights are dropped.

    Returns:
      :class:`FitResult`. A non-finite loss or params raises :class:`TrainingDiverged`
      carrying the last finite state.

    Raises:
      ValueError: a bad argument, weights included (negative, non-finite, the wrong
        length, an unknown class, all zero), a loss that does not take the model's output,
        two learning rates (a GradientTransformation and ``learning_rate=``), a state that
        does not fit or is already at ``epochs``, before anything compiles.
    """
    run = check_fit(model, params, x, y, epochs, batch_size, optimizer, learning_rate, loss,
                    grad, seed, validation_split, validation_data, patience, state,
                    compute_dtype, sample_weight, class_weight, log_every)
    # uint8 or 0..255 inputs: once, pointing at the caller. Read from the inputs as given
    # (on the host), not from run.x: reading the device copy back waits for its transfer
    # (65 ms for 60,000 digits), which otherwise runs while the epoch is traced.
    warn_input_range(x)
    trainer = cached_trainer(run.model, run.optimizer, batch_size, run.loss, grad,
                             compute_dtype=compute_dtype, mesh=mesh)
    data, val, state = (run.x, run.y, run.w), run.validation_data, run.state
    if mesh is not None:
        data, val, state = place_on_mesh((data, val, state), mesh)
    key = jax.random.key(seed)
    stopping = run.stopping

    first = int(run.state.epoch) + 1

    def run_epoch(state, epoch):  # one compiled epoch, then validation
        # a resumed run's first epoch judges its rate against the rate the state was
        # trained at (a schedule object's state was reset to its step-0 rate: a warm-up
        # from 0 made the round-off at a decay's end look like a negative rate)
        state, record = train_epoch(trainer, state, data, key, epoch,
                                    run.resumed_rate if epoch == first else None)
        record.update(validate(trainer, state.params, val))
        return state, record

    state, history = run_epochs(run_epoch, state, epochs, stopping=stopping,
                                log=EpochLog(epochs, log_every, log) if verbose else None,
                                on_epoch_end=on_epoch_end)
    return fit_result(state, history, stopping)


def fit_result(state: TrainState, history: list, stopping: Patience | None) -> FitResult:
    """The :class:`FitResult` of a run: with early stopping that kept an epoch, its params
    and state (its history record marked ``"restored"``); else the last."""
    best = 0 if stopping is None else stopping.best_epoch(state)
    if best > 0:
        for r in history:
            if r["epoch"] == best:
                r["restored"] = True
        return FitResult(state.early.best.params, state, history, best, state.early.best)
    return FitResult(state.params, state, history, int(state.epoch))


def choose_optimizer(optimizer: Any, learning_rate: float | None, params: Params
                     ) -> tuple[GradientTransformation, bool]:
    """Which optimizer trains, and whether a rate was asked for: the one rule for the
    learning rate, fresh and resumed, that :func:`fit` and the scripts follow.

    * a name and ``learning_rate``: that optimizer at that rate (asked for);
    * a name alone: the optimizer at its own default rate
      (:func:`fnmlp.optim.default_learning_rate`); nothing asked for, so a resumed state
      keeps its rate;
    * a GradientTransformation: the rate (or schedule) it was built with (asked for);
    * a GradientTransformation and ``learning_rate``: two rates for one run, refused.

    Returns:
      ``(optimizer, asked)``, the optimizer checked against ``params``.

    Raises:
      ValueError: a bad rate or name, a GradientTransformation that breaks the state
        contract, or both rates given.
    """
    asked = True
    if isinstance(optimizer, str):
        asked = learning_rate is not None
        optimizer = get_optimizer(optimizer, learning_rate)  # which checks the rate
    elif learning_rate is not None:
        if not callable(learning_rate):  # a schedule is callable
            learning_rate = checks.check_positive_float(learning_rate, "learning_rate")
        lr = "a schedule" if callable(learning_rate) else f"{learning_rate:g}"
        raise ValueError(
            f"learning_rate={lr} given with an optimizer object, which has its own rate:"
            " give the rate once: in the object you built (fnmlp.optim.adamw(lr), your"
            f" chain's inject_hyperparams), or by name (optimizer='adam', learning_rate={lr})")
    check_optimizer(optimizer, params)
    return optimizer, asked


def _another_optimizer(opt_state: Any, params: Params) -> str:
    """Why a state's optimizer state does not fit this fit's optimizer, naming the
    built-in optimizers whose state it has the structure of (a resumed Adam state given to
    fit's default ``"sgd"`` read as a 500-character cut PyTreeDef). It names no name to
    pass: a name alone takes that optimizer's own momentum and weight decay, which need
    not be the state's (an AdamW state has Adam's structure)."""
    from fnmlp.optim import OPTIMIZERS

    have = jax.tree.structure(opt_state)
    names = [name for name in OPTIMIZERS
             if jax.tree.structure(jax.eval_shape(get_optimizer(name).init, params)) == have]
    made = (f"its structure is that of {' or '.join(repr(n) for n in names)}" if names
            else "it is no built-in optimizer's")
    return (f"state.opt_state was made by another optimizer than this fit's; {made}: pass"
            " the optimizer it was trained with, the same object or the same name and"
            " settings (fnmlp.optim.adamw(1e-3, weight_decay=0.01), ...)")


def _params_difference(have: Any, want: Any) -> str:
    """Where a state's params and the model's first differ, by path and shape."""
    a = jax.tree_util.tree_flatten_with_path(have)[0]
    b = jax.tree_util.tree_flatten_with_path(want)[0]
    for (pa, la), (pb, lb) in zip(a, b):
        if pa != pb:
            return (f"the state has params{jax.tree_util.keystr(pa)} {np.shape(la)} where the"
                    f" model has params{jax.tree_util.keystr(pb)} {np.shape(lb)}")
    return (f"the state holds {len(a)} arrays, the model {len(b)}" if len(a) != len(b) else
            f"the state is a {type(have).__name__} of {len(a)} arrays, the model's params"
            f" a {type(want).__name__}")


def resumed_state(state: TrainState, optimizer: GradientTransformation, asked: bool,
                  built: bool = False) -> TrainState:
    """The state to resume from, with the learning rate this fit asks for (the rate
    ``optimizer`` starts at, when :func:`choose_optimizer` says one was asked for) in
    place of the state's, and, for an optimizer object the caller ``built``
    (``fnmlp.optim.adamw(1e-3, weight_decay=5.0)``), its weight decay too; the state as it
    is otherwise (a name keeps the state's decay). The same rule as the scripts' ``--lr``
    on ``--resume``. (A schedule then decides each step from the state's count.)"""
    if not asked:
        return state
    fresh = optimizer.init(state.params)
    rate = get_learning_rate(fresh)  # may be 0: a warm-up's start
    held = state.opt_state.learning_rate
    opt_state = state.opt_state._replace(learning_rate=host_scalar(float(rate), held.dtype))
    if built and "weight_decay" in getattr(opt_state, "_fields", ()) and (
            "weight_decay" in getattr(fresh, "_fields", ())):
        opt_state = opt_state._replace(weight_decay=host_scalar(
            float(fresh.weight_decay), opt_state.weight_decay.dtype))
    return state._replace(opt_state=opt_state)


def _check_decay_kept(state: TrainState, optimizer: GradientTransformation, params: Params,
                      name: str) -> None:
    """A name alone keeps a resumed state's weight decay (:func:`resumed_state`), but only
    an optimizer that decays at all applies it: ``"sgd"`` and ``"adam"`` by name build a
    program without the decay term, and an ``sgd(0.1, weight_decay=0.1)`` state resumed
    with ``optimizer="sgd"`` trained on without decay while its state still read 0.1.
    ``ValueError`` then, naming the decay and how to keep it."""
    held = getattr(state.opt_state, "weight_decay", None)
    own = getattr(optimizer.init(params), "weight_decay", None)  # host scalars: no compile
    if held is None or own is None or not (float(held) > 0 and float(own) == 0):
        return
    raise ValueError(
        f"the state trained with weight decay {float(held):g}, which optimizer={name!r}"
        f" alone would drop (by name it builds no decay term): pass the optimizer with its"
        f" decay, e.g. fnmlp.optim.{name}(weight_decay={float(held):g}) (add"
        " mask=fnmlp.optim.matrices_only if it decayed the weight matrices only, as the"
        " scripts' --weight-decay)")


def check_resumed_state(state: Any, params: Params, optimizer: GradientTransformation) -> None:
    """A state to resume from must be a :class:`TrainState` whose params have the
    structure and shapes of ``params`` and whose optimizer state is the one ``optimizer``
    makes; ``ValueError`` naming the first difference, before anything compiles."""
    if not isinstance(state, TrainState):
        raise ValueError(f"state must be a TrainState (e.g. a FitResult's .state or a loaded"
                         f" checkpoint); got {type(state).__name__}")
    for what, have, want in (("state.params", state.params, params),
                             ("state.opt_state", state.opt_state,
                              jax.eval_shape(optimizer.init, params))):
        if jax.tree.structure(have) != jax.tree.structure(want):
            if what == "state.params":
                raise ValueError("state.params does not fit this fit's params (the state was"
                                 " made for another architecture): "
                                 + _params_difference(have, want))
            raise ValueError(_another_optimizer(have, params))
        for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(have),
                                jax.tree.leaves(want)):
            if tuple(np.shape(a)) != tuple(np.shape(b)):
                raise ValueError(f"{what}{jax.tree_util.keystr(path)} has shape"
                                 f" {tuple(np.shape(a))}; this fit's model needs"
                                 f" {tuple(np.shape(b))}")


class FitRun(NamedTuple):
    """What :func:`check_fit` hands :func:`fit`: every argument checked, once."""

    model: Layer
    loss: Loss  # the loss as a value, resolved from its name once
    optimizer: GradientTransformation
    state: TrainState  # fresh, or the resumed one at the rate asked for
    x: Array  # [N, D] in the params' dtype (the validation split taken off)
    y: Array  # [N] int labels or [N, C]
    w: Array | None  # [N] per-example weights, or None
    validation_data: tuple | None  # (x_val, y_val), checked, or None
    stopping: Patience | None = None  # early stopping on the validation (or train) loss
    resumed_rate: float | None = None  # the rate the resumed state held, before this fit's


def check_fit(model, params, x, y, epochs, batch_size, optimizer, learning_rate, loss,
              grad, seed, validation_split, validation_data, patience, state=None,
              compute_dtype=None, sample_weight=None, class_weight=None, log_every=1
              ) -> FitRun:
    """Every check of :func:`fit`, on the host, before anything compiles, each run once;
    returns the :class:`FitRun` of trusted values (the optimizer and its state chosen by
    :func:`choose_optimizer`, the data as checked arrays, the weights ``[N]``)."""
    model, lossdef = checks.check_config(model, loss, grad)
    epochs = checks.check_positive_int(epochs, "epochs")
    check_seed(seed)
    built = not isinstance(optimizer, str)  # an object: its own rate and decay apply
    name = None if built else optimizer
    optimizer, asked = choose_optimizer(optimizer, learning_rate, params)
    if state is not None:
        check_resumed_state(state, params, optimizer)
        if name is not None:
            _check_decay_kept(state, optimizer, params, name)
        stopped = patience is not None and state.early is not None and bool(state.early.stopped)
        if not stopped and int(state.epoch) >= epochs:
            raise ValueError(f"epochs={epochs} but the state is already at epoch"
                             f" {int(state.epoch)}: epochs is the epoch to train up to; give"
                             f" more than {int(state.epoch)} to continue")
    raw_x = x
    x, y, w, widths = check_training_data(model, lossdef, params, x, y, sample_weight,
                                          class_weight)
    if validation_data is not None and validation_split is not None:
        raise ValueError("give validation_split or validation_data, not both")
    if validation_split is not None:
        if not (isinstance(validation_split, float) and 0 < validation_split < 1):
            raise ValueError(
                f"validation_split must be a float in (0, 1); got {validation_split!r}")
        idx = np.arange(len(x))
        tr, va = (part.x for part in train_test_split(idx, idx, validation_split, seed,
                                                      name="validation_split"))
        xn, yn = np.asarray(x), np.asarray(y)
        x, y, validation_data = jax.device_put(xn[tr]), jax.device_put(yn[tr]), (
            jax.device_put(xn[va]), jax.device_put(yn[va]))
        if w is not None:  # weights of the training part ("balanced" counts it alone)
            sw = None if sample_weight is None else np.asarray(sample_weight)[tr]
            w = check_weights(model, params, x, y, lossdef, sw, class_weight,
                              n_out=widths[1])
    else:
        validation_data = check_validation_data(model, lossdef, params, validation_data,
                                                widths)
    check_batch_size(batch_size, len(x))
    stopping = None if patience is None else Patience(  # which checks patience
        patience, "val_loss" if validation_data is not None else "train_loss")
    checks.check_positive_int(log_every, "log_every")
    if check_compute_dtype(compute_dtype) is not None:
        checks.check_fits(raw_x, compute_dtype)  # the products take x in it
    if state is not None and state.early is not None:
        if stopping is None:  # no early stopping asked: the last params are the model, so
            state = state._replace(early=None)  # the state (and its checkpoint) say so too
        else:
            stopping.check_state(state)
    held = None if state is None else float(jax.device_get(get_learning_rate(state.opt_state)))
    state = (fresh_state(params, optimizer) if state is None
             else resumed_state(state, optimizer, asked, built))
    return FitRun(model, lossdef, optimizer, state, x, y, w, validation_data, stopping, held)


def check_training_data(model: Layer, loss: Loss, params: Any, x: Any, y: Any,
                        sample_weight: Any = None, class_weight: Any = None):
    """The training data of a model and loss already checked together: ``(x, y, w,
    (D, C))``, the arrays the kernels trust, the weights ``[N]`` (None when unweighted)
    and the model's widths. Shared by :func:`fit` and :func:`fnmlp.fit_population`."""
    x, y = checks.as_numeric_array(x, "x"), checks.as_numeric_array(y, "y")
    if x.ndim >= 1 and y.ndim >= 1 and len(x) != len(y):
        raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
    x, y, d_in, n_out = checks.check_data(model, params, x, y, loss)
    w = check_weights(model, params, x, y, loss, sample_weight, class_weight, n_out=n_out)
    return x, y, w, (d_in, n_out)


def check_validation_data(model: Layer, loss: Loss, params: Any, validation_data: Any,
                          widths: tuple[int, int]) -> tuple | None:
    """``(x_val, y_val)`` checked as the training data was (None stays None)."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        raise ValueError("validation_data must be a pair (x_val, y_val)")
    return checks.check_data(model, params, *validation_data, loss, ("x_val", "y_val"),
                             widths)[:2]


def check_batch_size(batch_size: Any, n: int) -> int:
    """``batch_size`` as an int in ``1..n`` (``n`` training examples)."""
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the number of training examples"
                         f" ({n}); got {batch_size}")
    return batch_size


def evaluate(model: Layer, params: Params, x: Any, y: Any,
             loss: str | Loss = "softmax_cross_entropy", batch_size: int = 1024, *,
             sample_weight: Any = None, class_weight: Any = None) -> dict:
    """Mean loss and accuracy (classification) or MSE/MAE (regression) over all of x,
    in evaluation mode (no dropout); ``model`` and ``loss`` as for :func:`fit` (a loss
    that does not take the model's output is refused).

    Returns:
      ``{"loss", "accuracy"}`` or ``{"loss", "mse", "mae"}``, Python floats.

    With ``sample_weight`` / ``class_weight`` (as :func:`fit`) the loss is the weighted
    mean ``sum w_i loss_i / sum w_i``; accuracy, MSE and MAE stay unweighted. For
    per-class precision, recall and balanced accuracy see
    :func:`fnmlp.classification_report`.
    """
    model, lossdef = checks.check_config(model, loss)
    x, y, _, n_out = checks.check_data(model, params, x, y, lossdef)
    w = check_weights(model, params, x, y, lossdef, sample_weight, class_weight, n_out=n_out)
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    run = jitted_eval(model, lossdef, batch_size)
    # unweighted: the same call (and compiled program) as fit's validation
    out = run(params, x, y) if w is None else run(params, x, y, w)
    return {k: float(v) for k, v in out.items()}
