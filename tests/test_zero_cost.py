"""A disabled metric set compiles to the same machine code as a kernel without the calls."""

import numpy as np
from numba import njit

from engram_numba._asm import native_asm

from .test_metric_set import Color, Shop


@njit
def instrumented(m, x):
    acc = 0.0
    for i in range(x.size):
        v = np.sin(x[i])
        acc += v
        m.sale(Color.GREEN, v)            # kernel method: counter + histogram
        m.by_shape.inc(i % 3, i % 2)
        m.visits.add(i)
        m.stock.set(acc, 1)
        m.stock.sub(v, i % 2)
        m.wait.observe(v * 2.0)
        m.delta.observe(-v)
    return acc


@njit
def bare(x):
    acc = 0.0
    for i in range(x.size):
        v = np.sin(x[i])
        acc += v
    return acc


def test_disabled_set_compiles_to_the_bare_kernel():
    x = np.linspace(0.0, 3.0, 64)
    assert instrumented(Shop.disabled(), x) == bare(x)
    disabled_sig = instrumented.signatures[-1]
    instrumented(Shop(), x)
    enabled_sig = instrumented.signatures[-1]
    reference = native_asm(bare)
    assert native_asm(instrumented, disabled_sig) == reference
    # the comparison can fail: the enabled kernel's code differs
    assert native_asm(instrumented, enabled_sig) != reference


def test_disabled_argument_takes_no_register():
    """The disabled set's native value is an empty struct: no argument at all."""
    from numba import typeof
    from numba.core.registry import cpu_target
    ty = typeof(Shop.disabled())
    model = cpu_target.target_context.data_model_manager[ty]
    assert len(model.get_value_type().elements) == 0



def test_disabled_kernel_methods_in_a_parallel_loop_compile_without_warnings(tmp_path):
    """numba's parfor pass warned about the variables of a disabled method's body
    (NumbaIRAssumptionWarning) when numba inlined the body into the engram workload,
    whose trials run in a ``prange`` loop.  A fresh compile, in a subprocess with an
    empty cache directory."""
    import os
    import subprocess
    import sys
    code = """
import warnings
import numpy as np
warnings.simplefilter("always")
from engram_numba.engram import CognitivePatternMetrics, CognitiveTracer
from engram_numba.engram.workload import build_graph, run_trials
g = build_graph(500, 1)
run_trials(CognitivePatternMetrics.disabled(), CognitiveTracer.disabled(), g.indptr, g.indices,
           g.weights, 0, 8, 1, np.zeros(1, np.int64))
print("compiled")
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0 and "compiled" in r.stdout, r.stderr
    assert "NumbaIRAssumptionWarning" not in r.stderr, r.stderr[:2000]
