"""Recording helpers (``engram_numba._inline``): compiled once per process for every shape,
callable from Python all the same."""

import json
import os
import subprocess
import sys

from numba import njit

from engram_numba.metrics.buckets import exponential_index, exponential_tables


COMPILE_TWO_TYPES = """
import json
import numpy as np
from numba import njit, types
from engram_numba import Event, EventSet, Tracer, TracingConfig
from engram_numba.tracing import _ring


class TwoTypes(EventSet, name="inline_two_types"):
    first = Event("The first type", k=np.uint32)
    second = Event("The second type", x=np.float64)


@njit
def emit_both(tr):
    tr.first.emit(1)
    tr.second.emit(2.0)


drained = []
for size in (64, 128):
    tr = Tracer(TwoTypes, TracingConfig(ring_buffer_size=size))
    emit_both(tr)
    drained.append(len(tr.drain()))
    tr.close()
out = {"drained": drained}
for name in ("emit", "write_slot", "sampled"):
    sigs = getattr(_ring, name).signatures
    out[name] = {"compiles": len(sigs),
                 "literal": [str(s) for s in sigs if any(isinstance(a, types.Literal) for a in s)]}
print(json.dumps(out))
"""


def test_a_helper_compiles_once_for_every_event_type_and_ring_geometry(tmp_path):
    """numba compiles a callee once per literal value of its arguments; the helpers take
    plain types, so two event types on tracers of two geometries share one compile.  In a
    fresh process with an empty cache, so that every helper is compiled there."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", COMPILE_TWO_TYPES], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("drained") == [2, 2]
    for name, got in out.items():
        assert got == {"compiles": 1, "literal": []}, (name, got)


def test_a_helper_called_from_python_runs_the_same_code():
    lut, bounds = exponential_tables(3)

    @njit
    def compiled(v):
        return exponential_index(v, 3, lut, bounds)

    for v in (1e-3, 0.5, 1.0, 1.5, 2.0, 1e6):
        assert exponential_index(v, 3, lut, bounds) == compiled(v)


def test_a_recording_helper_keeps_no_machine_code_of_its_own():
    """A recording helper is only linked into the functions that call it, so numba turns
    none of it into machine code of its own: the object code it keeps (what its disk cache
    entry holds) has its environment pointer and not its function.  A plain njit function
    (the control) has its function there; the kernel calling the helper runs it."""
    from engram_numba._inline import always_inline

    def twice_plus(a, b):
        return 2 * a + b

    helper = always_inline(njit(twice_plus))
    plain = njit(twice_plus)

    @njit
    def kernel(a, b):
        return helper(a, b) + plain(a, b)

    assert kernel(3, 4) == 20
    assert helper(3, 4) == 10                   # from Python, through its twin

    def object_code(dispatcher):
        (cres,) = dispatcher.overloads.values()
        return cres.fndesc.mangled_name.encode(), cres.library._get_compiled_object()

    name, code = object_code(plain)
    assert name in code
    name, code = object_code(helper)
    assert name not in code and b"NumbaEnv" in code
