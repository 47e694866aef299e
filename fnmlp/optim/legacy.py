"""The optimizer states written before the optimizers were chains (checkpoints of fnmlp
up to issue 42), and the two conversions a loader needs to resume from one.

The old states held every buffer beside the scalars, one NamedTuple per optimizer; a
checkpoint stores them under these paths (``opt_state/mu/0/w``, ...)::

    SGDState(count, learning_rate, weight_decay, velocity)      velocity () without momentum
    AdamState(count, learning_rate, weight_decay, mu, nu)       adam, adamw
    RMSPropState(count, learning_rate, weight_decay, nu)

Today's :class:`~fnmlp.optim.transforms.InjectHyperparamsState` holds the same scalars and
keeps the buffers in its chain's states (``opt_state/inner_state/2/mu/0/w``). The arrays
are the same ones, so resuming is a relabelling::

    template = init_state(params, optimizer)             # today's layout
    if is_legacy(read_checkpoint_meta(path)["paths"]):
        old, config = load_checkpoint(path, to_legacy(template))
        state = from_legacy(old, template)
    else:
        state, config = load_checkpoint(path, template)

(A plain ``sgd`` without momentum stores the same paths in both layouts: no buffers.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from fnmlp.optim.transforms import (
    InjectHyperparamsState,
    ScaleByAdamState,
    ScaleByRmsState,
    TraceState,
    tree_get,
)

Array = jax.Array

FORMAT = "the optimizer state before issue 42 (SGDState, AdamState, RMSPropState)"


class SGDState(NamedTuple):
    count: Array  # shape=(), int32: updates applied
    learning_rate: Array  # shape=(), the params' float dtype
    weight_decay: Array  # shape=(), the params' float dtype
    velocity: Any  # like params; () when momentum == 0


class AdamState(NamedTuple):
    count: Array  # shape=(), int32
    learning_rate: Array  # shape=(), the params' float dtype
    weight_decay: Array  # shape=(), the params' float dtype
    mu: Any  # first moment, like params
    nu: Any  # second moment, like params


class RMSPropState(NamedTuple):
    count: Array  # shape=(), int32
    learning_rate: Array  # shape=(), the params' float dtype
    weight_decay: Array  # shape=(), the params' float dtype
    nu: Any  # running mean of g^2, like params


_BUFFERS = ("/mu/", "/nu/", "/velocity/")


def is_legacy(paths: list[str]) -> bool:
    """Whether a checkpoint's pytree ``paths`` hold an optimizer state of the old layout
    (a buffer directly under ``opt_state/``, no ``inner_state``)."""
    return any(p.startswith("opt_state/") and any(p[len("opt_state"):].startswith(b)
                                                  for b in _BUFFERS) for p in paths)


def _is_injected(x: Any) -> bool:
    return isinstance(x, InjectHyperparamsState)


def _old(state: InjectHyperparamsState) -> NamedTuple:
    scalars = (state.count, state.learning_rate, state.weight_decay)
    inner = state.inner_state
    mu = tree_get(inner, "mu", None)
    if mu is not None:
        return AdamState(*scalars, mu, tree_get(inner, "nu"))
    nu = tree_get(inner, "nu", None)
    if nu is not None:
        return RMSPropState(*scalars, nu)
    return SGDState(*scalars, tree_get(inner, "velocity", ()))


def to_legacy(tree: Any) -> Any:
    """``tree`` (a training state, or any pytree) with each of fnmlp's optimizer states
    in it written in the old layout: the template to load an old checkpoint into. Leaves
    are kept (arrays or ``jax.ShapeDtypeStruct``)."""
    return jax.tree.map(lambda x: _old(x) if _is_injected(x) else x, tree,
                        is_leaf=_is_injected)


def _new(template: InjectHyperparamsState, old: NamedTuple) -> InjectHyperparamsState:
    def one(s):
        if isinstance(s, ScaleByAdamState):
            return ScaleByAdamState(old.count, old.mu, old.nu)  # Adam's t - 1: the count
        if isinstance(s, ScaleByRmsState):
            return ScaleByRmsState(old.nu)
        if isinstance(s, TraceState):
            return TraceState(old.velocity)
        return s

    inner = template.inner_state
    inner = tuple(one(s) for s in inner) if type(inner) is tuple else one(inner)
    return InjectHyperparamsState(old.count, old.learning_rate, old.weight_decay, inner)


def from_legacy(old: Any, template: Any) -> Any:
    """The tree ``old`` (loaded into :func:`to_legacy` of ``template``) in ``template``'s
    layout: each old optimizer state's arrays moved into today's chain.

    Raises:
      ValueError: ``old`` does not have the layout ``to_legacy(template)`` has.
    """
    want = jax.tree.structure(to_legacy(template))
    if jax.tree.structure(old) != want:
        raise ValueError(f"a state in {FORMAT} must have the structure {want}; got"
                         f" {jax.tree.structure(old)}"[:400])
    return jax.tree.map(lambda t, o: _new(t, o) if _is_injected(t) else o, template, old,
                        is_leaf=_is_injected)
