"""numba's on-disk cache with metric sets: it hits, and stale entries never crash."""

import subprocess
import sys

SETMOD = '''
from engram_numba import MetricSet, Counter, Histogram

class {name}(MetricSet):
    hits = Counter("hits_total")
    sizes = Histogram("sizes", scale=2)
'''

KMOD = '''
import sys
from numba import njit
from setmod import {name} as Metrics

@njit(cache=True)
def kernel(m, n):
    for i in range(n):
        m.hits.inc()
        m.sizes.observe(1.5)
    return n

m = Metrics()
kernel(m, 10)
sig = kernel.signatures[0]
print(m.hits.value(), kernel.stats.cache_hits.get(sig, 0), kernel.stats.cache_misses.get(sig, 0))
'''


def _run(tmp_path, name):
    (tmp_path / "setmod.py").write_text(SETMOD.format(name=name))
    (tmp_path / "kmod.py").write_text(KMOD.format(name=name))
    r = subprocess.run([sys.executable, "kmod.py"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return [int(x) for x in r.stdout.split()]


def test_cached_kernel_is_reused_and_survives_a_renamed_class(tmp_path):
    assert _run(tmp_path, "Metrics") == [10, 0, 1]      # compiled and saved
    assert _run(tmp_path, "Metrics") == [10, 1, 0]      # loaded from the cache
    # the index now references setmod.Metrics, which no longer exists
    assert _run(tmp_path, "Renamed")[0] == 10
    assert _run(tmp_path, "Renamed") == [10, 1, 0]
