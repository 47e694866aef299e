"""Test settings: silent broadcasting bugs fail, a scoped float64 fixture, and a counter of
XLA compilations read from JAX's own compile log."""

import contextlib
import logging
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Runs the test with float64 enabled, restoring the default afterwards."""
    with jax.enable_x64(True):
        yield


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def count_compiles(name: str | None = None):
    """Yields a list that fills with one entry per XLA compilation inside the block (of
    the function called ``name`` if given), read from JAX's own log (``jax.log_compiles``),
    not from a private cache counter."""
    compiles: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("Compiling ") and (name is None or f"jit({name})" in msg):
                compiles.append(msg)

    handler, logger = Handler(logging.DEBUG), logging.getLogger("jax")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        with jax.log_compiles(True):
            yield compiles
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def run_script(script: str, *args: str, check: bool = True, folder: str = "scripts",
               cwd=None, env=None, timeout: float = 300):
    """Runs ``folder/script`` (a repo script) with ``args`` in a fresh Python; returns the
    ``CompletedProcess`` (text stdout/stderr). ``check`` asserts exit status 0, showing
    the output otherwise."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, f"{REPO}/{folder}/{script}", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r
