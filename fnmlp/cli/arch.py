"""The one architecture grammar of the scripts' flags.

``--layers dense:N,ACTIVATION,dropout:RATE,layernorm`` (the hidden layers; the output
``Dense(C)`` is added); ``--hidden 256,128 --activation relu --dropout 0.2`` is sugar for
it, and both end in the same model: ``fnmlp.mlp([D, 256, 128, C], "relu", dropout=0.2)``
equals ``serial(Dense(256), Relu(), Dropout(0.2), Dense(128), Relu(), Dropout(0.2),
Dense(C), in_features=D)`` (:func:`build_model`). Nothing here imports jax at module
level, so a bad flag answers before jax is imported.
"""

from __future__ import annotations

import argparse

from fnmlp._names import ACTIVATION_NAMES
from fnmlp.cli.types import UsageError, parse_int_list


def parse_hidden(text: str) -> list[int]:
    """``--hidden``: widths like ``256,128``; ``0`` or ``none`` for no hidden layer."""
    if text.strip().lower() in ("0", "none"):
        return []
    return parse_int_list(text)


def parse_names(text: str) -> list[str]:
    """``--activation``: one name, or a comma list with one per hidden layer."""
    names = [t.strip() for t in text.split(",")]
    for name in names:
        if name not in ACTIVATION_NAMES:
            raise argparse.ArgumentTypeError(
                f"{name!r} is not an activation; choose from"
                f" {', '.join(sorted(ACTIVATION_NAMES))}"
                f" (one, or one per hidden layer, comma-separated); got {text!r}")
    return names


def parse_rates(text: str) -> list[float]:
    """``--dropout``: one drop probability in [0, 1), or one per hidden layer."""
    rates = []
    for t in text.split(","):
        try:
            r = float(t)
        except ValueError:
            r = float("nan")
        if not 0 <= r < 1:
            raise argparse.ArgumentTypeError(
                f"dropout rates are drop probabilities in [0, 1), comma-separated; got"
                f" {t.strip()!r} in {text!r}")
        rates.append(r)
    return rates


def parse_layers(text: str) -> list:
    """``--layers``: the hidden layers (see :data:`LAYER_SPEC_HELP`) as Layers."""
    items = _layer_items(text)  # every item checked before jax is imported
    from fnmlp.layers import Dense, Dropout, LayerNorm, activation_layer

    out = []
    for name, arg in items:
        if name == "dense":
            out.append(Dense(int(arg)))
        elif name == "dropout":
            out.append(Dropout(float(arg)))
        elif name == "layernorm":
            out.append(LayerNorm())
        else:
            out.append(activation_layer(name))
    return out


def _layer_items(text: str) -> list[tuple[str, str]]:
    """``--layers`` read as ``[(name, arg)]`` and checked, item by item, in plain Python
    (a bad item is named before jax is imported)."""
    out = []
    for i, item in enumerate(t.strip() for t in text.split(",")):
        name, _, arg = item.partition(":")
        name = name.strip().lower()
        bad = f"--layers item {i + 1} {item!r}"
        try:
            if name == "dense":
                width = int(arg)
                if width <= 0:
                    raise ValueError
            elif name == "dropout":
                if not 0 <= float(arg) < 1:
                    raise ValueError
            elif (name == "layernorm" or name in ACTIVATION_NAMES) and not arg:
                pass
            elif name == "softmax":
                raise argparse.ArgumentTypeError(
                    f"{bad}: the scripts train on logits with the fused"
                    " softmax_cross_entropy; leave softmax out (it is applied in predict)")
            else:
                raise argparse.ArgumentTypeError(
                    f"{bad}: want dense:N, dropout:RATE, layernorm or an activation name"
                    f" ({', '.join(sorted(ACTIVATION_NAMES))})")
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{bad}: dense:N needs a width > 0, dropout:RATE a drop probability in"
                " [0, 1)") from None
        out.append((name, arg))
    return out


def hidden_layers(args: argparse.Namespace) -> list:
    """The hidden layers the flags ask for: ``--layers``, or ``--hidden`` with one
    ``--activation`` (and optional ``--dropout``) per hidden layer, or one for all. A count
    that fits neither is a :class:`UsageError` naming the flag."""
    if getattr(args, "layers", None):
        return list(args.layers)
    _check_counts(args)
    return list(_mlp_from_flags(args, 1, 1).layers[:-1])


def _check_counts(args: argparse.Namespace) -> None:
    """One ``--activation`` and ``--dropout`` for all hidden layers, or one per layer (a
    :class:`UsageError` naming the flag); plain Python, no jax."""
    if getattr(args, "layers", None):
        return
    hidden = args.hidden
    for flag, values in (("--activation", _activations(args)), ("--dropout", _rates(args))):
        if len(values) not in (1, len(hidden)):
            raise UsageError(f"{flag} gives {len(values)} values for {len(hidden)} hidden"
                             f" layers ({','.join(map(str, hidden)) or 'none'}); give one, or"
                             " one per hidden layer")


def _activations(args: argparse.Namespace) -> list[str]:
    return args.activation if isinstance(args.activation, list) else [args.activation]


def _rates(args: argparse.Namespace) -> list[float]:
    return getattr(args, "dropout", None) or [0.0]


def _mlp_from_flags(args: argparse.Namespace, d_in: int, n_out: int):
    """``fnmlp.mlp`` of ``--hidden``, ``--activation`` and ``--dropout``."""
    from fnmlp.layers import mlp

    return mlp([int(d_in), *args.hidden, int(n_out)], tuple(_activations(args)),
               dropout=tuple(_rates(args)))


def build_model(args: argparse.Namespace, d_in: int, n_out: int):
    """The network the flags describe, for inputs of width ``d_in``: the hidden layers,
    then ``Dense(n_out)``; ``serial(*layers, Dense(n_out), in_features=d_in)``, which for
    ``--hidden`` is exactly ``fnmlp.mlp([d_in, *hidden, n_out], ...)``."""
    from fnmlp.layers import Dense, serial

    if getattr(args, "layers", None):
        return serial(*args.layers, Dense(int(n_out)), in_features=int(d_in))
    hidden_layers(args)  # the counts, checked with the flags' names
    return _mlp_from_flags(args, d_in, n_out)


def network(metrics: dict):
    """The trained network, rebuilt from ``metrics["config"]["model"]``."""
    from fnmlp.layers import from_config

    return from_config(metrics["config"]["model"])


def architecture_name(config: dict) -> str:
    """A short name for titles: ``784-256-10 relu`` or the layer list."""
    model = config.get("model", {})
    names = []
    for layer in model.get("layers", []):
        t = layer["type"]
        names.append(str(layer["features"]) if t == "Dense" else
                     f"drop{layer['rate']:g}" if t == "Dropout" else t.lower())
    return f"{config['sizes'][0]}-" + "-".join(names) if names else str(config.get("sizes"))
