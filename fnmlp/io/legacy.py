"""Checkpoints of the earlier formats, read once into today's config.

Today a checkpoint's config describes the network once: ``model`` (the architecture as
JSON, :meth:`fnmlp.layers.Layer.to_config`), ``loss``, and ``input`` (the input record:
its ``width`` ``D``, its ``kind``, and a ``scale`` where raw inputs are scaled), beside
whatever the run kept (epochs, seed, optimizer, ...). Two earlier formats still load:

* before issue 27: ``sizes`` (``[D, H..., C]``) and ``activation`` (one name, or one per
  hidden layer), no ``model``: the plain MLP they describe (:func:`fnmlp.layers.mlp`);
* issues 27 to 41: ``model`` beside ``sizes`` (``[D, ...]``: only its first entry, the
  input width, was read) and, from the scripts, ``activation`` and ``dropout`` too.

:func:`upgrade` turns either into today's config (keeping the old keys, as the file holds
them); this is the one module of fnmlp that reads ``sizes`` or ``activation``.
"""

from __future__ import annotations

from typing import Any

from fnmlp.layers import check_sizes, mlp

__all__ = ["is_legacy", "upgrade"]

HINT = ("save it with save_checkpoint(path, state, config=fnmlp.model_config(model, loss)),"
        " which writes model, loss and input")


def is_legacy(config: dict) -> bool:
    """Whether ``config`` is of an earlier format: it records ``sizes``, or no ``model``."""
    return "sizes" in config or "model" not in config


def upgrade(config: dict, where: Any = "config") -> dict:
    """Today's config (``model``, ``loss``, ``input`` with its ``width``) of an earlier
    format's ``config``; the old keys are kept as they are. ``where`` (a path) names the
    checkpoint in messages.

    Raises:
      ValueError: a config that lacks what the earlier format needs (saying what), or
        whose ``sizes`` is not a list of positive widths.
    """
    if "model" not in config and "sizes" not in config:  # no architecture of any format
        held = f" (it holds {sorted(config)})" if config else ""
        raise ValueError(f"{where}: the checkpoint holds no model config{held}, so the model"
                         f" cannot be rebuilt (it needs 'model', 'loss' and 'input'); {HINT}")
    has_model = "model" in config
    needed = ("sizes", "loss") if has_model else ("sizes", "activation", "loss")
    missing = [k for k in needed if k not in config]
    if missing:
        raise ValueError(f"{where}: the checkpoint's config lacks {missing}, so the model"
                         " cannot be rebuilt (the architecture is 'model' with 'input', or"
                         f" 'sizes' and 'activation' for the earlier format); {HINT}")
    sizes = config["sizes"]
    if not isinstance(sizes, list) or not sizes:
        raise ValueError(f"{where}: the checkpoint's config 'sizes' must be a list [D, ...];"
                         f" got {sizes!r}"[:200])
    if has_model:
        d, model = check_sizes([sizes[0], 1])[0], config["model"]  # the rest is in 'model'
    else:
        acts = config["activation"]
        model = mlp(check_sizes(sizes), acts if isinstance(acts, str) else tuple(acts))
        d, model = int(sizes[0]), model.to_config()
    record = config.get("input")
    record = dict(record) if isinstance(record, dict) else {}
    return {**config, "model": model, "input": {**record, "width": d}}
