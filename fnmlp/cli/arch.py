"""The one architecture grammar of the scripts' flags.

The grammar is a list of hidden-layer items, ``dense:N``, ``ACTIVATION``,
``dropout:RATE``, ``layernorm`` (the output ``Dense(C)`` is added): ``--layers`` writes it
out. Two spellings are sugar translated into those items (:func:`sugar_items`) and read
by the same parser (:func:`check_items`), so a width, a rate or an activation name is
checked in one place (:func:`width`, :func:`rate`, :func:`activation`):

* ``--hidden 256,128 --activation relu --dropout 0.2`` (one activation and rate for all
  hidden layers, or one per layer);
* ``compare.py``'s ``--arch WIDTHS[:ACTIVATIONS[:DROPOUT]]`` (:mod:`fnmlp.cli.compare`).

All end in the same model (:func:`model_of`): ``serial(*hidden, Dense(C),
in_features=D)``, which for the sugar equals ``fnmlp.mlp([D, 256, 128, C], "relu",
dropout=0.2)``. Nothing here imports jax at module level, so a bad flag answers before
jax is imported.
"""

from __future__ import annotations

import argparse

from fnmlp._names import ACTIVATION_NAMES
from fnmlp.cli.types import UsageError, parse_int_list

Item = tuple[str, str]  # ("dense", "256"), ("relu", ""), ("dropout", "0.2"), ("layernorm", "")

# ----------------------------------------------------------------------- the checks, once


def width(text: str) -> int:
    """A hidden width: a positive integer (``ValueError`` otherwise)."""
    try:
        w = int(text)
    except (TypeError, ValueError):
        w = 0
    if w <= 0:
        raise ValueError(f"widths must be positive integers; got {str(text).strip()!r}")
    return w


def rate(text: str) -> float:
    """A dropout rate: a drop probability in [0, 1) (``ValueError`` otherwise)."""
    try:
        r = float(text)
    except (TypeError, ValueError):
        r = float("nan")
    if not 0 <= r < 1:
        raise ValueError(f"dropout rates are drop probabilities in [0, 1); got"
                         f" {str(text).strip()!r}")
    return r


def activation(name: str) -> str:
    """An activation's name, one of :data:`fnmlp._names.ACTIVATION_NAMES`."""
    if name not in ACTIVATION_NAMES:
        raise ValueError(f"{name!r} is not an activation; choose from"
                         f" {', '.join(sorted(ACTIVATION_NAMES))}")
    return name


def fits(values: list, hidden: list) -> bool:
    """One value for all hidden layers, or one per hidden layer."""
    return len(values) in (1, len(hidden))


# ------------------------------------------------------------------- the grammar: --layers


def check_items(items: list[Item], what: str = "--layers") -> list[Item]:
    """The items checked one by one, in plain Python (a bad item is named before jax is
    imported); ``what`` names the flag in messages."""
    out = []
    for i, (name, arg) in enumerate(items):
        bad = f"{what} item {i + 1} {name + ':' + arg if arg else name!r}"
        name = name.strip().lower()
        try:
            if name == "dense":
                arg = str(width(arg))
            elif name == "dropout":
                rate(arg)
            elif name == "softmax":
                raise argparse.ArgumentTypeError(
                    f"{bad}: the scripts train on logits with the fused"
                    " softmax_cross_entropy; leave softmax out (it is applied in predict)")
            elif arg or (name != "layernorm" and name not in ACTIVATION_NAMES):
                raise argparse.ArgumentTypeError(
                    f"{bad}: want dense:N, dropout:RATE, layernorm or an activation name"
                    f" ({', '.join(sorted(ACTIVATION_NAMES))})")
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{bad}: dense:N needs a width > 0, dropout:RATE a drop probability in"
                " [0, 1)") from None
        out.append((name, arg))
    return out


def layers_of(items: list[Item]) -> list:
    """Checked items as Layers (imports jax)."""
    from fnmlp.layers import Dense, Dropout, LayerNorm, activation_layer

    kinds = {"dense": lambda a: Dense(int(a)), "dropout": lambda a: Dropout(float(a)),
             "layernorm": lambda a: LayerNorm()}
    return [kinds[n](a) if n in kinds else activation_layer(n) for n, a in items]


def parse_layers(text: str) -> list:
    """``--layers``: the hidden layers (see :data:`LAYER_SPEC_HELP`) as Layers."""
    items = [item.strip().partition(":")[::2] for item in text.split(",")]
    return layers_of(check_items(items))


def sugar_items(hidden: list[int], activations: list[str], rates: list[float]) -> list[Item]:
    """The items ``--hidden``/``--activation``/``--dropout`` (and ``--arch``) stand for:
    per hidden layer ``dense:W``, its activation, and ``dropout:R`` where ``R > 0`` (as
    :func:`fnmlp.mlp` builds it). The counts are checked by the caller (:func:`fits`)."""
    items: list[Item] = []
    for i, w in enumerate(hidden):
        r = rates[i if len(rates) > 1 else 0]
        items += [("dense", str(w)), (activations[i if len(activations) > 1 else 0], "")]
        items += [("dropout", repr(float(r)))] if r else []
    return check_items(items, "the hidden layers")


# --------------------------------------------------------------------------- the sugar


def parse_hidden(text: str) -> list[int]:
    """``--hidden``: widths like ``256,128``; ``0`` or ``none`` for no hidden layer."""
    if text.strip().lower() in ("0", "none"):
        return []
    return parse_int_list(text)  # the comma list of positive integers, read in one place


def parse_names(text: str) -> list[str]:
    """``--activation``: one name, or a comma list with one per hidden layer."""
    try:
        return [activation(t.strip()) for t in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            f"{e} (one, or one per hidden layer, comma-separated); got {text!r}") from None


def parse_rates(text: str) -> list[float]:
    """``--dropout``: one drop probability in [0, 1), or one per hidden layer."""
    try:
        return [rate(t) for t in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} in {text!r} (comma-separated)") from None


def hidden_layers(args: argparse.Namespace) -> list:
    """The hidden layers the flags ask for: ``--layers``, or ``--hidden`` with one
    ``--activation`` (and optional ``--dropout``) per hidden layer, or one for all,
    translated into the grammar's items. A count that fits neither is a
    :class:`UsageError` naming the flag."""
    if getattr(args, "layers", None):
        return list(args.layers)
    _check_counts(args)
    return layers_of(sugar_items(args.hidden, _activations(args), _rates(args)))


def _check_counts(args: argparse.Namespace) -> None:
    """One ``--activation`` and ``--dropout`` for all hidden layers, or one per layer (a
    :class:`UsageError` naming the flag); plain Python, no jax."""
    if getattr(args, "layers", None):
        return
    hidden = args.hidden
    for flag, values in (("--activation", _activations(args)), ("--dropout", _rates(args))):
        if not fits(values, hidden):
            raise UsageError(f"{flag} gives {len(values)} values for {len(hidden)} hidden"
                             f" layers ({','.join(map(str, hidden)) or 'none'}); give one, or"
                             " one per hidden layer")


def _activations(args: argparse.Namespace) -> list[str]:
    return args.activation if isinstance(args.activation, list) else [args.activation]


def _rates(args: argparse.Namespace) -> list[float]:
    return getattr(args, "dropout", None) or [0.0]


# --------------------------------------------------------------------------- the model


def model_of(hidden: list, d_in: int, n_out: int):
    """``serial(*hidden, Dense(n_out), in_features=d_in)``: the network of the hidden
    layers, for inputs of width ``d_in``."""
    from fnmlp.layers import Dense, serial

    return serial(*hidden, Dense(int(n_out)), in_features=int(d_in))


def build_model(args: argparse.Namespace, d_in: int, n_out: int):
    """The network the flags describe, for inputs of width ``d_in``: the hidden layers,
    then ``Dense(n_out)``; for ``--hidden`` exactly ``fnmlp.mlp([d_in, *hidden, n_out],
    ...)``."""
    return model_of(hidden_layers(args), d_in, n_out)


def network(metrics: dict):
    """The trained network, rebuilt from ``metrics["config"]["model"]``."""
    from fnmlp.layers import from_config

    return from_config(metrics["config"]["model"])


def architecture_name(config: dict) -> str:
    """A short name for titles: ``784-256-10 relu`` or the layer list, from a config of
    ``{model, input}`` (:func:`fnmlp.io.saved_config` reads an earlier one)."""
    names = []
    for layer in config["model"].get("layers", []):
        t = layer["type"]
        names.append(str(layer["features"]) if t == "Dense" else
                     f"drop{layer['rate']:g}" if t == "Dropout" else t.lower())
    return f"{config['input']['width']}-" + "-".join(names)
