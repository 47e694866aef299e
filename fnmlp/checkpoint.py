"""Checkpoints: params, optimizer state, step and model config in one ``.npz``, no pickle.

The file is a plain ``numpy.savez`` archive: every array leaf of the
:class:`~fnmlp.train.TrainState` under its pytree path (``params/0/w``,
``opt_state/mu/1/b``, ``step``, ...), plus ``__meta__``, a UTF-8 JSON document (the model
config, the fnmlp version, the pytree paths in order). Loading uses
``allow_pickle=False`` and rebuilds the arrays into a *template* (a freshly initialised
state of the intended architecture), so nothing executable is ever read.

Saving is atomic: the archive is written to a temporary file in the same folder,
flushed and fsynced, then ``os.replace``d over the target, so a crash mid-write leaves
the previous checkpoint intact. Non-finite params are refused.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "fnmlp-checkpoint-v1"
# what reading a truncated or corrupted .npz raises, at the archive or at one member
DAMAGED = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _key_name(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _flatten(tree: Any) -> list[tuple[str, Any]]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return [("/".join(_key_name(k) for k in path), leaf) for path, leaf in leaves]


def save_checkpoint(path: str | os.PathLike, state: Any, config: dict | None = None) -> Path:
    """Writes ``state`` (any pytree of arrays, usually a TrainState) and ``config``.

    Raises ``ValueError`` if any floating-point leaf holds NaN or Inf (a diverged run must
    not overwrite a good checkpoint). Returns the path written.
    """
    from fnmlp import __version__

    path = Path(path)
    named = _flatten(state)
    arrays = {}
    for name, leaf in named:
        a = np.asarray(jax.device_get(leaf))
        if a.dtype == jnp.bfloat16:
            a = a.astype(np.float32)  # npz has no bfloat16; restored by the template dtype
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"refusing to save a checkpoint with non-finite values in {name}")
        arrays[name] = a
    meta = {"format": FORMAT, "fnmlp_version": __version__, "config": config or {},
            "paths": [n for n, _ in named]}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``__meta__`` document of a checkpoint (config, version, paths)."""
    with _open(path) as z:
        return _meta(z, path)


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if head[:1] in (b"{", b"[") and not zipfile.is_zipfile(path):  # an .npz is a zip
        raise ValueError(f"{path} is not an fnmlp checkpoint (.npz written by save_checkpoint"
                         " / the training scripts); it looks like JSON (metrics.json?)")
    try:
        return np.load(path, allow_pickle=False)
    except DAMAGED as e:
        raise ValueError(f"{path}: not a readable fnmlp checkpoint (truncated or not an .npz:"
                         f" {e})") from None


def _meta(z, path) -> dict:
    if "__meta__" not in z.files:
        raise ValueError(f"{path}: not an fnmlp checkpoint (no __meta__ entry)")
    try:
        meta = json.loads(bytes(z["__meta__"]).decode())
    except DAMAGED as e:
        raise ValueError(f"{path}: not a readable fnmlp checkpoint (damaged: {e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return meta


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Loads a checkpoint into the structure of ``template``; returns ``(tree, config)``.

    ``template`` gives the expected structure, shapes and dtypes: a training state
    (``init_state(init_mlp(...), opt)``) to resume, or just params (``init_mlp(...)``)
    to load the params of a saved training state. A different architecture raises
    ``ValueError`` naming the layer and both shapes; a damaged file raises
    ``ValueError`` saying so.
    """
    path = Path(path)
    with _open(path) as z:
        meta = _meta(z, path)
        named = _flatten(template)
        want = [n for n, _ in named]
        prefix = ""
        if meta["paths"] != want and all(f"params/{n}" in meta["paths"] for n in want) and (
                len(_layers(meta["paths"])) == len(_layers(want, ""))):
            prefix = "params/"  # a params-only template: load the params of the state
        if prefix == "" and meta["paths"] != want:
            raise ValueError(_mismatch(path, meta["paths"], want))
        leaves = []
        for name, leaf in named:
            try:
                a = z[prefix + name]
            except DAMAGED as e:
                raise ValueError(f"{path}: not a readable fnmlp checkpoint ({prefix + name}"
                                 f" is damaged: {e})") from None
            if a.shape != tuple(np.shape(leaf)):
                parts = (prefix + name).split("/")
                where = (f"layer {parts[1]} {parts[2]!r}" if parts[0] == "params"
                         else name)
                raise ValueError(
                    f"{path}: {where} has shape {a.shape} in the checkpoint but"
                    f" {tuple(np.shape(leaf))} in the model")
            leaves.append(jnp.asarray(a, dtype=jnp.asarray(leaf).dtype))
    treedef = jax.tree.structure(template)
    return jax.tree.unflatten(treedef, leaves), meta["config"]


def _mismatch(path, have: list[str], want: list[str]) -> str:
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    state_like = any(n.startswith("params/") for n in have)
    prefix_want = "params/" if any(n.startswith("params/") for n in want) else ""
    detail = ""
    n_have, n_want = len(_layers(have)), len(_layers(want, prefix_want))
    if n_have != n_want:
        detail = f"; the checkpoint has {n_have} layers, the model {n_want}"
    elif state_like and not prefix_want:
        detail = "; the template is neither params nor a training state like the saved one"
    return (f"{path}: checkpoint does not match the model: missing {missing[:4]},"
            f" unexpected {extra[:4]}{detail}")


def _layers(paths: list[str], prefix: str = "params/") -> set[str]:
    """The layer indices named in pytree paths (``params/0/w`` or, bare, ``0/w``)."""
    return {p[len(prefix):].split("/")[0] for p in paths
            if p.startswith(prefix) and p[len(prefix):].split("/")[0].isdigit()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
