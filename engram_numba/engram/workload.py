"""A reference numba workload: an associative memory, instrumented end to end.

Memories are nodes of a random graph (heavy-tailed degrees, weighted edges).
Each *trial* recalls a cue in parallel (``prange``) and exercises every
cognitive pattern the metrics and tracer know:

* **recall and priming** - spreading activation from the cue: its strongest
  neighbours are semantically primed, their neighbours associatively
  (strength = product of edge weights, decayed), and a cue studied recently
  primes itself (repetition, strength decaying with the time since study);
* **interference** - neighbours studied before the cue interfere proactively,
  after it retroactively (magnitude from edge weight and study distance); the
  fan effect grows with the cue's degree;
* **reconsolidation** - a recall opens a plasticity window; a modification
  attempt lands at a window position: inside [0, 1] it is a hit (modified with
  the plasticity factor as probability), outside a miss, or it is rejected
  (too soon, outside the window, conflicting, other);
* **DRM false memory** - some trials study the cue's neighbours as a word list
  with the cue as the unstudied critical lure; list items are recalled, and the
  lure is falsely recalled with a probability growing with the list's summed
  association, with a reconstruction confidence;
* **spacing** - some trials re-study a memory massed or distributed; the
  retention improvement is larger for distributed practice (and can be negative
  for massed).

Everything random is a hash of (seed, trial) and every memory's study time a
hash of the node, so results are deterministic for a seed whatever the thread
count and scheduling: every count and histogram bucket is identical; float
sums (histogram sums, the checksum) can differ in their last bits because
threads add in a different order; event timestamps and ring ids vary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .._atomics import atomic_add
from .metrics import InterferenceType, PrimingType, RejectionReason

__all__ = ["MemoryGraph", "build_graph", "run_trials", "trial"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
STUDY_PERIOD = 4096          # every memory is studied once per period, at a hashed phase


@dataclass(frozen=True)
class MemoryGraph:
    """CSR adjacency of the memory graph."""

    indptr: np.ndarray     # int64[n + 1]
    indices: np.ndarray    # int64[edges]
    weights: np.ndarray    # float64[edges], association strengths in (0, 1]

    @property
    def nodes(self) -> int:
        return self.indptr.size - 1

    @property
    def edges(self) -> int:
        return self.indices.size


def build_graph(nodes: int = 20_000, seed: int = 1, mean_degree: float = 12.0,
                max_degree: int = 96) -> MemoryGraph:
    """A random graph with heavy-tailed degrees (a few hubs: large fan effects)."""
    if nodes < 2:
        raise ValueError(f"nodes must be at least 2, got {nodes}")
    rng = np.random.default_rng(seed)
    raw = rng.pareto(2.2, nodes) + 1.0
    degrees = np.clip(np.rint(raw / raw.mean() * mean_degree), 2, min(max_degree, nodes - 1))
    degrees = degrees.astype(np.int64)
    indptr = np.zeros(nodes + 1, dtype=np.int64)
    np.cumsum(degrees, out=indptr[1:])
    indices = rng.integers(0, nodes - 1, indptr[-1], dtype=np.int64)
    owner = np.repeat(np.arange(nodes), degrees)
    indices += indices >= owner              # no self-loops
    weights = rng.beta(2.0, 3.0, indptr[-1]) * 0.95 + 0.05
    # strongest association first: recall walks neighbours in that order
    for v in range(nodes):
        a, b = indptr[v], indptr[v + 1]
        order = np.argsort(-weights[a:b], kind="stable")
        indices[a:b] = indices[a:b][order]
        weights[a:b] = weights[a:b][order]
    return MemoryGraph(indptr, indices, weights)


@njit(inline="always")
def _mix(x):
    """splitmix64 finaliser: a well-spread 64-bit hash."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(inline="always")
def _next(state):
    """(new state, uniform in [0, 1))."""
    state = state + _GOLDEN
    return state, np.float64(_mix(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def _studied_at(node):
    return np.int64(_mix(np.uint64(node) * _GOLDEN) % np.uint64(STUDY_PERIOD))


@njit(inline="always")
def _age(node, trial):
    """Trials since ``node`` was last studied (study is periodic, phase hashed)."""
    return (trial - _studied_at(node)) % STUDY_PERIOD


@njit(inline="always")
def _base_level(node, trial):
    """ACT-R base-level activation: ln(sum of (time since each past study) ** -0.5)."""
    total = 0.0
    age = _age(node, trial) + 1
    for k in range(STUDIES):
        total += (age + k * STUDY_PERIOD) ** -0.5
    return math.log(total)


STUDIES = 6                 # past studies of every memory that recall integrates over


@njit(nogil=True, parallel=True, cache=True)
def run_trials(metrics, tracer, indptr, indices, weights, first, count, seed, progress):
    """Run trials ``first .. first + count``; returns a checksum of all activations.

    ``progress[0]`` is advanced atomically every 64 trials (for a live progress bar).
    """
    checksum = 0.0
    for k in prange(count):
        checksum += trial(metrics, tracer, indptr, indices, weights, first + k, seed)
        if k % 64 == 63:
            atomic_add(progress, 0, 64)
    atomic_add(progress, 0, count % 64)
    return checksum


@njit(nogil=True, cache=True)
def trial(metrics, tracer, indptr, indices, weights, t, seed):
    """One trial: recall a cue by spreading activation (priming), with interference,
    reconsolidation, DRM and spacing as the trial's hash decides; returns the cue's
    total activation."""
    n = indptr.size - 1
    state = _mix(np.uint64(seed) * _GOLDEN ^ np.uint64(t))
    state, u = _next(state)
    cue = min(np.int64(u * n), n - 1)
    start, stop = indptr[cue], indptr[cue + 1]
    degree = stop - start
    activation = 0.0

    # -- recall: spreading activation, priming ---------------------------------
    for j in range(start, stop):
        nb = indices[j]
        w = weights[j]
        activation += w
        second = 0.0
        for j2 in range(indptr[nb], indptr[nb + 1]):
            second += weights[j2] * math.exp(_base_level(indices[j2], t))
        activation += w * math.exp(_base_level(nb, t)) + 0.3 * w * second
        if j - start < 3:
            metrics.record_priming(PrimingType.SEMANTIC, w)
            tracer.trace_priming(PrimingType.SEMANTIC, w, cue, nb)
            d2 = indptr[nb + 1] - indptr[nb]
            if d2 > 0:
                state, u = _next(state)
                j2 = indptr[nb] + min(np.int64(u * d2), d2 - 1)
                strength = 0.6 * w * weights[j2]
                metrics.record_priming(PrimingType.ASSOCIATIVE, strength)
                tracer.trace_priming(PrimingType.ASSOCIATIVE, strength, cue, indices[j2])
    age = _age(cue, t)
    if age < 64:
        strength = math.exp(-age / 24.0)
        metrics.record_priming(PrimingType.REPETITION, strength)
        tracer.trace_priming(PrimingType.REPETITION, strength, cue, cue)

    # -- interference ------------------------------------------------------------
    competitors = 0
    for j in range(start, min(stop, start + 4)):
        nb = indices[j]
        distance = age - _age(nb, t)
        magnitude = weights[j] * math.exp(-abs(distance) / 512.0)
        if magnitude > 0.25:
            competitors += 1
            kind = InterferenceType.PROACTIVE if distance < 0 else InterferenceType.RETROACTIVE
            metrics.record_interference(kind, magnitude)
            tracer.trace_interference(kind, magnitude, cue, degree)
    if degree > 8:
        fan = 1.0 - 1.0 / (1.0 + 0.08 * (degree - 8))
        metrics.record_interference(InterferenceType.FAN, fan)
        tracer.trace_interference(InterferenceType.FAN, fan, cue, degree)

    # -- reconsolidation ---------------------------------------------------------
    state, u = _next(state)
    position = -0.3 + 1.9 * u
    state, u = _next(state)
    if u < 0.04:
        metrics.record_reconsolidation_rejection(RejectionReason.CONFLICTING)
    elif u < 0.05:
        metrics.record_reconsolidation_rejection(RejectionReason.OTHER)
    elif position < 0.0:
        metrics.record_reconsolidation_rejection(RejectionReason.TOO_SOON)
    elif position > 1.4:
        metrics.record_reconsolidation_rejection(RejectionReason.OUTSIDE_WINDOW)
    else:
        metrics.record_reconsolidation(position)
        plasticity = max(0.0, 1.0 - position) * (0.5 + 0.5 * weights[start])
        modifications = 0
        if position <= 1.0:
            metrics.record_reconsolidation_plasticity(plasticity)
            state, u = _next(state)
            if u < plasticity:
                metrics.record_reconsolidation_modification()
                modifications = 1
        tracer.trace_reconsolidation(cue, position, plasticity, modifications)

    # -- DRM false memory ----------------------------------------------------------
    state, u = _next(state)
    if u < 0.1 and degree >= 6:
        size = min(degree, 12)
        association = 0.0
        for j in range(start, start + size):
            association += weights[j]
            state, u = _next(state)
            if u < 0.65:
                metrics.record_drm_list_item()
        metrics.record_false_memory()
        lure_probability = min(0.95, 0.1 + 0.08 * association)
        state, u = _next(state)
        if u < lure_probability:
            metrics.record_drm_critical_lure()
            state, u = _next(state)
            confidence = min(1.0, 0.3 + 0.5 * lure_probability + 0.2 * u)
            metrics.record_reconstruction_confidence(confidence)
            tracer.trace_false_memory(_mix(np.uint64(cue)), size, confidence)

    # -- spacing -------------------------------------------------------------------
    state, u = _next(state)
    if u < 0.2:
        state, gap = _next(state)
        state, noise = _next(state)
        if gap < 0.35:
            metrics.record_massed_practice()
            metrics.record_retention_improvement(0.08 * gap - 0.03 + 0.04 * (noise - 0.5))
        else:
            metrics.record_distributed_practice()
            metrics.record_retention_improvement(0.05 + 0.25 * gap + 0.06 * (noise - 0.5))

    return activation
