"""engram's cognitive events, declared with the generic tracing library.

:class:`CognitiveEvents` is one event set among any a user could write: four
event types (priming, interference, reconsolidation, false memory) with
engram's payload fields.  :class:`CognitiveTracer` is a :class:`Tracer` of that
set with engram's names kept: the ``trace_*`` methods (kernel methods of the
set, so they work in kernels and from Python), ``EventType`` and
``EVENT_DTYPE``, and the production preset (priming and interference at 1 %).
"""

from __future__ import annotations

import numpy as np

from .._methods import kernel_method
from ..tracing.config import TracingConfig
from ..tracing.schema import Event, EventSet
from ..tracing.tracer import Tracer
from .enums import InterferenceType, PrimingType

__all__ = ["CognitiveEvents", "CognitiveTracer", "EventType", "EVENT_DTYPE", "EVENT_FIELDS"]


class CognitiveEvents(EventSet, name="engram",
                      production_rates={"priming": 0.01, "interference": 0.01}):
    """engram's traced cognitive events (milestone 13, task 011)."""

    priming = Event("Spreading activation primed a memory", priming_type=PrimingType,
                    strength=np.float32, source_node=np.uint64, target_node=np.uint64)
    interference = Event("Competing memories interfered", interference_type=InterferenceType,
                         magnitude=np.float32, target_episode_id=np.uint64,
                         competing_episode_count=np.uint32)
    reconsolidation = Event("A recalled memory was open to modification",
                            episode_id=np.uint64, window_position=np.float32,
                            plasticity_factor=np.float32, modification_count=np.uint32)
    false_memory = Event("A critical lure was reconstructed (DRM)",
                         critical_lure_hash=np.uint64, source_list_size=np.uint32,
                         reconstruction_confidence=np.float32)

    @kernel_method
    def trace_priming(self, priming_type: PrimingType, strength: np.float32,
                      source_node: np.uint64, target_node: np.uint64) -> bool:
        return self.priming.emit(priming_type, strength, source_node, target_node)

    @kernel_method
    def trace_interference(self, interference_type: InterferenceType, magnitude: np.float32,
                           target_episode_id: np.uint64,
                           competing_episode_count: np.uint32) -> bool:
        return self.interference.emit(interference_type, magnitude, target_episode_id,
                                      competing_episode_count)

    @kernel_method
    def trace_reconsolidation(self, episode_id: np.uint64, window_position: np.float32,
                              plasticity_factor: np.float32,
                              modification_count: np.uint32) -> bool:
        return self.reconsolidation.emit(episode_id, window_position, plasticity_factor,
                                         modification_count)

    @kernel_method
    def trace_false_memory(self, critical_lure_hash: np.uint64, source_list_size: np.uint32,
                           reconstruction_confidence: np.float32) -> bool:
        return self.false_memory.emit(critical_lure_hash, source_list_size,
                                      reconstruction_confidence)


#: The cognitive event types as an IntEnum (PRIMING = 0, ...), derived from the table.
EventType = CognitiveEvents.type_enum()
#: The dtype of drained cognitive events.
EVENT_DTYPE = CognitiveEvents.dtype()
#: Payload field names of each event type, in declaration order.
EVENT_FIELDS = {EventType(t.index): list(t.fields) for t in CognitiveEvents.layout.types}


class CognitiveTracer(Tracer):
    """A :class:`Tracer` of :class:`CognitiveEvents` (default: the development preset)."""

    events = CognitiveEvents

    def __init__(self, config: TracingConfig | None = None):
        super().__init__(CognitiveEvents,
                         TracingConfig.development() if config is None else config)

    @classmethod
    def disabled(cls) -> "CognitiveTracer":
        return super().disabled(CognitiveEvents)

    @classmethod
    def attach(cls, path, *, writable: bool = False) -> "CognitiveTracer":
        return super().attach(path, writable=writable, event_set=CognitiveEvents)
