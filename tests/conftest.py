"""Test settings: silent broadcasting bugs fail, and a scoped float64 fixture."""

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
