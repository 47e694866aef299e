"""JAX's persistent compilation cache: compiled programs kept on disk between runs.

A fresh process compiles each of fnmlp's programs (the epoch, the evaluation, the state
copy, ...) again: 0.1-1 s each on a CPU, several seconds per run. With the cache on, a
later run with the same configuration loads them from disk instead (see JAX's guide,
https://docs.jax.dev/en/latest/persistent_compilation_cache.html). fnmlp's scripts turn
it on at start; a library user calls :func:`enable_compile_cache` once, before the first
computation::

    import fnmlp
    fnmlp.enable_compile_cache()          # ~/.cache/fnmlp/jax (or $XDG_CACHE_HOME/fnmlp/jax)

The environment variable ``FNMLP_COMPILE_CACHE`` decides: unset, ``1`` or ``on`` uses
the default folder, ``0``/``off``/``false``/``no`` turns the cache off, any other value
is the folder to use. A cache folder set for JAX itself (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config.update("jax_compilation_cache_dir", ...)``) is left as it is.

A damaged entry cannot break a run: JAX warns ("Error reading persistent compilation
cache entry") and compiles the program again (tested with corrupted, truncated and empty
entry files). Keys include the JAX and XLA versions, the backend and the compile options,
so entries of another version are never read. JAX's warning applies: the cache is
trusted (a program loaded from it runs as it is), so the folder is created private to
the user (mode 0700) and should never be shared with, or writable by, others.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

ENV = "FNMLP_COMPILE_CACHE"
OFF = ("0", "off", "false", "no")
ON = ("", "1", "on", "true", "yes")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fnmlp/jax``, or ``~/.cache/fnmlp/jax`` when that is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fnmlp" / "jax"


def enable_compile_cache(path: str | os.PathLike | None = None, *,
                         min_compile_time_secs: float = 0.0) -> Path | None:
    """Turns on JAX's persistent compilation cache in ``path`` (created, mode 0700).

    Args:
      path: the cache folder; default: ``FNMLP_COMPILE_CACHE`` when it names a folder,
        else the folder JAX was already given, else :func:`default_cache_dir`.
      min_compile_time_secs: programs that compiled faster than this are not written
        (JAX's ``jax_persistent_cache_min_compile_time_secs``, whose default of 1 s would
        skip every program of a small network); default 0: write all.

    Returns:
      The folder in use, or None when the cache is off: ``FNMLP_COMPILE_CACHE=0`` (then
      nothing is changed, not even a folder JAX was given), or the folder cannot be
      created (a ``RuntimeWarning`` says why; the run goes on without the cache).

    Call it before the first computation; called later, it resets JAX's cache state so
    that the programs compiled from then on use it.
    """
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in OFF:
        return None
    import jax  # here, not at the top: FNMLP_COMPILE_CACHE=0 returns without it
    from jax.experimental.compilation_cache import compilation_cache as cc

    if path is None:
        given = jax.config.jax_compilation_cache_dir
        path = setting if setting.lower() not in ON else (given or default_cache_dir())
    path = Path(path).expanduser()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(f"compilation cache off: cannot create {path} ({e})", RuntimeWarning,
                      stacklevel=2)
        return None
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if jax.config.jax_compilation_cache_dir != str(path):
        jax.config.update("jax_compilation_cache_dir", str(path))
        cc.reset_cache()  # programs compiled from now on use the new folder
    return path


class CompileTimer:
    """Seconds JAX spent turning programs into executables inside a ``with`` block:
    tracing, lowering and XLA's compile (or loading from the persistent cache), summed
    from JAX's own ``jax.monitoring`` events (``/jax/core/compile/*`` durations). A
    training loop subtracts it to report examples/s of training alone.

    ``seconds`` is 0.0 when nothing was compiled. Events of other threads inside the block
    are counted too."""

    PREFIX = "/jax/core/compile/"

    def __init__(self):
        self.seconds = 0.0

    def _listen(self, event: str, duration: float, **_) -> None:
        if event.startswith(self.PREFIX):
            self.seconds += duration

    def __enter__(self) -> CompileTimer:
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc) -> None:
        import jax.monitoring

        jax.monitoring.unregister_event_duration_listener(self._listen)
