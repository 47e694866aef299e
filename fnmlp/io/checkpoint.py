"""Checkpoints: params, optimizer state, step and model config in one ``.npz``, no pickle.

The file is a plain ``numpy.savez`` archive: every array leaf of the
:class:`~fnmlp.train.TrainState` under its pytree path (``params/0/w``,
``opt_state/mu/1/b``, ``step``, ...), plus ``__meta__``, a UTF-8 JSON document (the model
config, the fnmlp version, the pytree paths in order). Loading uses
``allow_pickle=False`` and rebuilds the arrays into a *template* (a freshly initialised
state of the intended architecture), so nothing executable is ever read.

Loading checks before it reads: every member's ``.npy`` header (shape, dtype) is read
from the archive without its data and compared with the template, and the zip entry's
declared size with what the header implies; a member the checkpoint does not name, a
shape the model does not have, a size that does not match, or a ``__meta__`` over
:data:`META_LIMIT` bytes is refused (``ValueError``) before anything is decompressed, so a
small hostile file cannot make the loader inflate gigabytes.

Saving is atomic: the archive is written to a temporary file in the same folder,
flushed and fsynced, then ``os.replace``d over the target, so a crash mid-write leaves
the previous checkpoint intact. Non-finite params are refused.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.lib import format as npy

from fnmlp._checks import overflow_at
from fnmlp._version import __version__
from fnmlp.io.atomic import write_atomic
from fnmlp.layers.base import plain

FORMAT = "fnmlp-checkpoint-v1"
# what reading a truncated or corrupted .npz raises, at the archive or at one member
DAMAGED = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)
META_LIMIT = 16 * 2**20  # bytes: a larger __meta__ is refused before it is read
NUMERIC = "biufc"  # dtype kinds a checkpoint may hold: bool, int, uint, float, complex


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
    not overwrite a good checkpoint), or if ``config`` holds what JSON cannot (NumPy
    scalars are written as numbers). Returns the path written.
    """
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
    try:  # NumPy scalars (a layer's np.float32 rate, a config's np.int64) as numbers
        text = json.dumps(plain(meta))
    except TypeError as e:
        raise ValueError(f"config must hold only what JSON can (numbers, strings, lists,"
                         f" dicts, None); {e}") from None
    arrays["__meta__"] = np.frombuffer(text.encode(), np.uint8)
    return write_atomic(path, lambda f: np.savez(f, **arrays))


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The ``__meta__`` document of a checkpoint (config, version, paths)."""
    with _open(path) as z:
        return _meta(z, path)


def stored_float_dtype(path: str | os.PathLike, prefix: str = "params/") -> np.dtype | None:
    """The dtype of the first float member under ``prefix`` (the params a model was saved
    with), read from its ``.npy`` header alone; None when there is none. bfloat16 is
    stored as float32 (npz has no bfloat16)."""
    with _open(path) as z:
        for info in z.zip.infolist():
            if info.filename.startswith(prefix) and info.filename.endswith(".npy"):
                dtype = member_header(z.zip, info, path).dtype
                if dtype.kind == "f":
                    return dtype
    return None


def _open(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    with open(path, "rb") as f:
        head = f.read(64).lstrip()
    if head[:1] in (b"{", b"[") and not zipfile.is_zipfile(path):  # an .npz is a zip
        raise ValueError(f"{path} is not an fnmlp checkpoint (.npz written by save_checkpoint"
                         " / the training scripts); it looks like JSON (metrics.json?)")
    if not zipfile.is_zipfile(path):  # np.load reads it as a pickle and suggests allow_pickle
        raise ValueError(f"{path}: not a readable fnmlp checkpoint (not an .npz archive:"
                         " truncated, or another kind of file)")
    try:
        return np.load(path, allow_pickle=False)
    except DAMAGED as e:
        raise ValueError(f"{path}: not a readable fnmlp checkpoint (truncated or not an .npz:"
                         f" {e})") from None


def _meta(z, path) -> dict:
    if "__meta__" not in z.files:
        raise ValueError(f"{path}: not an fnmlp checkpoint (no __meta__ entry)")
    info = z.zip.getinfo("__meta__.npy" if "__meta__.npy" in z.zip.namelist() else "__meta__")
    if info.file_size > META_LIMIT:
        raise ValueError(f"{path}: __meta__ declares {info.file_size} bytes; a checkpoint's"
                         f" __meta__ is at most {META_LIMIT} bytes (refused unread)")
    head = member_header(z.zip, info, path)
    if head.dtype != np.uint8 or len(head.shape) != 1 or head.size != info.file_size:
        raise ValueError(f"{path}: __meta__ must be {info.file_size} bytes of uint8 text;"
                         f" its header says shape {head.shape}, dtype {head.dtype},"
                         f" {head.size} bytes")
    try:
        meta = json.loads(bytes(z["__meta__"]).decode())
    except (*DAMAGED, RecursionError) as e:
        raise ValueError(f"{path}: not a readable fnmlp checkpoint (damaged: {e})"[:300]
                         ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("paths", []), list) or not (
            isinstance(meta.get("config", {}), dict)):
        raise ValueError(f"{path}: not an fnmlp checkpoint (its __meta__ must be an object"
                         " with a list of paths and a config object)")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    return meta


def load_checkpoint(path: str | os.PathLike, template: Any, prefix: str | None = None
                    ) -> tuple[Any, dict]:
    """Loads a checkpoint into the structure of ``template``; returns ``(tree, config)``.

    ``template`` gives the expected structure, shapes and dtypes: a training state
    (``init_state(model.init_params(key), opt)``) to resume, or just params
    (``model.init_params(key)``)
    to load the params of a saved training state; its leaves may be arrays or
    ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape``: nothing allocated). A different
    architecture raises ``ValueError`` naming the layer and both shapes; a damaged file raises
    ``ValueError`` saying so. Every member's header is checked first
    (:func:`check_members`): a hostile file is refused before any member is inflated.
    ``prefix`` (e.g. ``"early/best/params/"``) reads the template's leaves from under that
    path of the saved tree; by default the whole tree, or ``params/`` for a params-only
    template.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: another architecture, a damaged file, or a member whose header, name
        or declared size does not fit the template (naming it), read from headers only.
    """
    path = Path(path)
    with _open(path) as z:
        meta = _meta(z, path)
        named = _flatten(template)
        want = [n for n, _ in named]
        if prefix is not None:
            if not all(prefix + n in meta["paths"] for n in want):
                raise ValueError(_mismatch(path, [p[len(prefix):] for p in meta["paths"]
                                                  if p.startswith(prefix)], want))
        else:
            prefix = ""
            if meta["paths"] != want and all(f"params/{n}" in meta["paths"] for n in want) and (
                    len(_layers(meta["paths"])) == len(_layers(want, ""))):
                prefix = "params/"  # a params-only template: load the params of the state
            if prefix == "" and meta["paths"] != want:
                raise ValueError(_mismatch(path, meta["paths"], want))
        check_members(z.zip, path, meta["paths"],
                      {prefix + n: tuple(np.shape(leaf)) for n, leaf in named})
        leaves = []
        for name, leaf in named:
            try:
                a = z[prefix + name]
            except DAMAGED as e:
                raise ValueError(f"{path}: not a readable fnmlp checkpoint ({prefix + name}"
                                 f" is damaged: {e})") from None
            if a.shape != tuple(np.shape(leaf)):  # checked from the header already
                raise ValueError(
                    f"{path}: {_where(prefix + name)} has shape {a.shape} in the checkpoint"
                    f" but {tuple(np.shape(leaf))} in the model")
            want = jnp.dtype(getattr(leaf, "dtype", None) or np.asarray(leaf).dtype)
            _check_fits(a, want, path, prefix + name)
            leaves.append(jnp.asarray(a, dtype=want))
    treedef = jax.tree.structure(template)
    return jax.tree.unflatten(treedef, leaves), meta["config"]


def _check_fits(a: np.ndarray, dtype: np.dtype, path, name: str) -> None:
    """``ValueError`` when a stored value is not finite (``save_checkpoint`` refuses them:
    the file was damaged or written otherwise; a NaN weight loaded silently) or a finite
    one would become inf in the template's ``dtype``: ``load_model(dtype="float16")``
    turned a weight of 1e5 into inf with only NumPy's cast warning, and the model
    predicted NaN."""
    if a.size == 0 or a.dtype.kind != "f":
        return
    bad = ~np.isfinite(a)
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise ValueError(f"{path}: {_where(name)} holds {a[idx]} at index"
                         f" {tuple(int(i) for i in idx)} ({int(bad.sum())} non-finite value(s)"
                         " in all); fnmlp never saves those: the file is damaged or was"
                         " written by something else")
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(a.dtype).max <= jnp.finfo(
            dtype).max:
        return
    hit = overflow_at(a, dtype)
    if hit is not None:
        idx, count = hit
        raise ValueError(f"{path}: {_where(name)} holds {a[idx]:g} at index {idx} ({count}"
                         f" value(s) in all), beyond {dtype.name}'s range (|v| <="
                         f" {float(jnp.finfo(dtype).max):.4g}): load it in a wider dtype"
                         " (dtype=None keeps the saved one)")


class MemberHeader(NamedTuple):
    """What a ``.npy`` member's header says, read without its data."""

    shape: tuple  # the array's shape
    dtype: np.dtype
    size: int  # bytes the member must hold: header + prod(shape) * itemsize


def member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> MemberHeader:
    """Reads only the ``.npy`` header of the archive member ``info`` (``read_magic`` and
    ``read_array_header_1_0`` / ``_2_0`` on its stream: a few KiB decompressed at most).

    Raises:
      ValueError: the member is not a ``.npy`` array of numbers (bool, int, float,
        complex), or cannot be read (naming it).
    """
    name = info.filename
    try:
        with zf.open(info) as f:
            version = npy.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npy.read_array_header_2_0(f)
            else:
                raise ValueError(f".npy format version {version} (1.0 or 2.0 expected)")
            offset = f.tell()  # bytes of magic and header
    except (*DAMAGED, RuntimeError, NotImplementedError) as e:
        raise ValueError(f"{path}: not a readable fnmlp checkpoint ({name}: {e})") from None
    if dtype.kind not in NUMERIC or dtype.hasobject or dtype.fields is not None:
        raise ValueError(f"{path}: {name} holds dtype {dtype}; a checkpoint holds arrays of"
                         " numbers (bool, int, uint, float, complex)")
    return MemberHeader(tuple(shape), dtype, offset + math.prod(shape) * dtype.itemsize)


def check_members(zf: zipfile.ZipFile, path, names: list[str], want: dict[str, tuple]) -> None:
    """Checks every member of the archive from its header alone, before any is read.

    Args:
      zf: the open archive.
      path: the file, for messages.
      names: the pytree paths the checkpoint's ``__meta__`` lists (every member but
        ``__meta__`` must be one of them).
      want: ``{name: shape}`` for the members that will be read (the template's).

    Raises:
      ValueError: naming the member: one the checkpoint does not name, one listed twice,
        one the template needs that is missing, a shape other than the template's (both
        shapes), or a declared size other than its header implies (both sizes).
    """
    known, seen = set(names) | {"__meta__"}, set()
    for info in zf.infolist():
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy") or name not in known:
            raise ValueError(f"{path}: the checkpoint holds a member {info.filename!r} that"
                             f" neither its __meta__ nor the model names")
        if name in seen:
            raise ValueError(f"{path}: the checkpoint holds the member {info.filename!r} twice")
        seen.add(name)
        head = member_header(zf, info, path)
        if name in want and head.shape != want[name]:
            raise ValueError(f"{path}: {_where(name)} has shape {head.shape} in the checkpoint"
                             f" but {want[name]} in the model (refused unread)")
        if head.size != info.file_size:
            raise ValueError(f"{path}: {info.filename} declares {info.file_size} bytes but its"
                             f" header (shape {head.shape}, {head.dtype}) implies {head.size}")
    missing = [n for n in want if n not in seen]
    if missing:
        raise ValueError(f"{path}: not a readable fnmlp checkpoint (its __meta__ lists"
                         f" {missing[:4]} but the archive lacks them)")


def _where(name: str) -> str:
    """``params/0/w`` (also bare ``0/w`` and early stopping's ``early/best/params/0/w``)
    -> ``layer 0 'w'``; other names as they are."""
    for head in ("early/best/params/", "params/", ""):
        parts = name[len(head):].split("/") if name.startswith(head) else []
        if len(parts) == 2 and parts[0].isdigit():
            return f"layer {parts[0]} {parts[1]!r}"
    return name


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

