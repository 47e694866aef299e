"""The persistent compilation cache (fnmlp.compile_cache): where it lives, how it is turned
off, that a second process loads its programs from it, and that damaged entries cost a
recompile, never a wrong or failed run. Runs that use the cache are subprocesses, so this
test process's JAX configuration is never touched."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from fnmlp.compile_cache import default_cache_dir, enable_compile_cache

RUN = r"""
import json, sys
import fnmlp
path = fnmlp.enable_compile_cache(sys.argv[1])
import jax
hits = []
jax.monitoring.register_event_listener(
    lambda e, **kw: hits.append(e) if e == "/jax/compilation_cache/cache_hits" else None)
ds = fnmlp.data.make_moons(128, seed=1)
model = fnmlp.mlp([2, 12, 2])
p = model.init_params(jax.random.key(0))
r = fnmlp.fit(model, p, ds.x, ds.y, epochs=2, batch_size=16, optimizer="adam",
              learning_rate=0.01, verbose=False)
ev = fnmlp.evaluate(model, r.params, ds.x, ds.y)
print(json.dumps({"path": str(path), "hits": len(hits),
                  "w": [float(v) for v in r.params[0]["w"].ravel()], "eval": ev}))
"""


def _run(cache: Path):
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("FNMLP_COMPILE_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", RUN, str(cache)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_default_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "fnmlp" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "fnmlp" / "jax"


def test_fnmlp_compile_cache_0_turns_it_off_without_touching_jax(monkeypatch, tmp_path):
    import jax

    before = jax.config.jax_compilation_cache_dir
    for off in ("0", "off", "False"):
        monkeypatch.setenv("FNMLP_COMPILE_CACHE", off)
        assert enable_compile_cache(tmp_path / "c") is None
    assert not (tmp_path / "c").exists()
    assert jax.config.jax_compilation_cache_dir == before


def test_warm_run_loads_programs_and_damaged_entries_only_cost_a_recompile(tmp_path):
    cache = tmp_path / "cache"
    cold, _ = _run(cache)
    entries = sorted(cache.iterdir())
    assert cold["path"] == str(cache) and cold["hits"] == 0
    assert any("epoch" in e.name for e in entries), [e.name for e in entries]
    assert oct(cache.stat().st_mode & 0o777) == oct(0o700)  # private: the cache is trusted
    warm, _ = _run(cache)
    assert warm["hits"] >= 3  # the init, the epoch, the evaluation (at least)
    assert warm["w"] == cold["w"] and warm["eval"] == cold["eval"]
    # damage every entry: random bytes, truncated, empty, a corrupted tail
    for i, e in enumerate(entries):
        data = e.read_bytes()
        e.write_bytes([os.urandom(len(data)), data[: len(data) // 2], b"",
                       data[:-64] + os.urandom(64)][i % 4])
    damaged, stderr = _run(cache)
    assert damaged["w"] == cold["w"] and damaged["eval"] == cold["eval"]
    assert damaged["hits"] == 0 and "Error reading persistent compilation cache" in stderr
