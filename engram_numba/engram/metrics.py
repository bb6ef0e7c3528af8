"""engram's cognitive-pattern metrics: priming, interference, reconsolidation, DRM, spacing.

Built with the public :class:`MetricSet` machinery, exactly as a user would
build their own.  Every ``record_*`` method is lock-free and callable from
kernels and from Python; the queries are Python-only reads of a snapshot.

Exported under the names engram's Grafana dashboard queries (see the table in
the class docstring).  An invalid enum value in a kernel drops the whole record
and counts it in ``engram_invalid_records_total``; from Python it raises
``ValueError`` before anything is recorded.

Histogram resolution: scale 4 (16 buckets per power of two, quantile relative
error <= 2.2 %) from 2**-7 (0.0078) up.  Classic ``le`` buckets at that
resolution keep Prometheus' ``histogram_quantile`` within 4.4 % of the true
quantile for values in [0.01, 1] (its linear interpolation stays inside one
bucket, which is at most 2**(1/16) - 1 = 4.4 % wide).
"""

from __future__ import annotations

from .._methods import kernel_method
from .._values import as_enum
from ..metrics.metric_set import MetricSet
from ..metrics.kinds import HISTOGRAM
from ..metrics import Counter, Gauge, Histogram, HistogramData, TopK
from .enums import InterferenceType, PrimingType, RejectionReason
from .health import CognitiveHealth

__all__ = ["CognitivePatternMetrics", "PrimingType", "InterferenceType", "RejectionReason"]


# strengths, factors, confidences; interference magnitudes can exceed 1.  Every classic
# le bucket is exported (classic_scale=4): histogram_quantile stays within 4.4 % in range
_UNIT = dict(scale=4, range=(2.0 ** -7, 2.0), classic_scale=4)
_MAGNITUDE = dict(scale=4, range=(2.0 ** -7, 2.0 ** 3), classic_scale=4)


class CognitivePatternMetrics(MetricSet, name="engram"):
    """Cognitive-pattern metrics of an associative memory (engram milestone 13).

    ==========================================  =====================================
    metric                                      recorded by
    ==========================================  =====================================
    engram_priming_events_total{priming_type}   record_priming
    engram_priming_strength                     record_priming
    engram_interference_detections_total        record_interference
    engram_{proactive,retroactive}_interference_total, engram_fan_effect_interference_total
    engram_{proactive,retroactive}_interference_magnitude, engram_fan_effect_magnitude
    engram_reconsolidation_events_total         record_reconsolidation
    engram_reconsolidation_window_{hits,misses}_total
    engram_reconsolidation_modifications_total  record_reconsolidation_modification
    engram_reconsolidation_rejections_total{reason}  record_reconsolidation_rejection
    engram_reconsolidation_plasticity_factor    record_reconsolidation_plasticity
    engram_drm_critical_lure_generations_total  record_false_memory
    engram_drm_critical_lure_recalls_total      record_drm_critical_lure
    engram_drm_list_item_recalls_total          record_drm_list_item
    engram_reconstruction_confidence            record_reconstruction_confidence
    engram_{massed,distributed}_practice_events_total  record_{massed,distributed}_practice
    engram_retention_improvement                record_retention_improvement
    ==========================================  =====================================

    The priming total is the sum of the per-type counts: one atomic add per event.
    """

    priming_events = Counter("engram_priming_events_total", "Priming events by type",
                             labels={"priming_type": PrimingType})
    priming_strength = Histogram("engram_priming_strength", "Strength of priming events", **_UNIT)

    interference_detections = Counter("engram_interference_detections_total",
                                      "Interference detections of any type")
    proactive_interference = Counter("engram_proactive_interference_total",
                                     "Proactive interference detections")
    retroactive_interference = Counter("engram_retroactive_interference_total",
                                       "Retroactive interference detections")
    fan_effect_interference = Counter("engram_fan_effect_interference_total",
                                      "Fan-effect interference detections")
    proactive_magnitude = Histogram("engram_proactive_interference_magnitude",
                                    "Magnitude of proactive interference", **_MAGNITUDE)
    retroactive_magnitude = Histogram("engram_retroactive_interference_magnitude",
                                      "Magnitude of retroactive interference", **_MAGNITUDE)
    fan_effect_magnitude = Histogram("engram_fan_effect_magnitude",
                                     "Magnitude of fan-effect interference", **_MAGNITUDE)

    reconsolidation_events = Counter("engram_reconsolidation_events_total",
                                     "Reconsolidation attempts with a window position")
    reconsolidation_modifications = Counter("engram_reconsolidation_modifications_total",
                                            "Memories modified during reconsolidation")
    reconsolidation_window_hits = Counter("engram_reconsolidation_window_hits_total",
                                          "Attempts inside the plasticity window")
    reconsolidation_window_misses = Counter("engram_reconsolidation_window_misses_total",
                                            "Attempts outside the window, and rejections")
    reconsolidation_rejections = Counter("engram_reconsolidation_rejections_total",
                                         "Rejected reconsolidations by reason",
                                         labels={"reason": RejectionReason})
    reconsolidation_plasticity = Histogram("engram_reconsolidation_plasticity_factor",
                                           "Plasticity factor of reconsolidations", **_UNIT)

    false_memory_generations = Counter("engram_drm_critical_lure_generations_total",
                                       "Critical lures generated (false memories)")
    drm_critical_lure_recalls = Counter("engram_drm_critical_lure_recalls_total",
                                        "DRM recalls of the unstudied critical lure")
    drm_list_item_recalls = Counter("engram_drm_list_item_recalls_total",
                                    "DRM recalls of studied list items")
    reconstruction_confidence = Histogram("engram_reconstruction_confidence",
                                          "Confidence of reconstructed memories", **_UNIT)

    massed_practice = Counter("engram_massed_practice_events_total", "Massed repetitions")
    distributed_practice = Counter("engram_distributed_practice_events_total",
                                   "Distributed (spaced) repetitions")
    retention_improvement = Histogram("engram_retention_improvement",
                                      "Retention change after spaced practice (may be negative)",
                                      negative=True, **_UNIT)

    # health of the event tracing, kept up to date by a TraceCollector
    events_dropped = Counter("engram_cognitive_events_dropped_total",
                             "Cognitive events lost: overwritten in a full ring, torn, "
                             "or with no ring free for their thread")
    event_buffer_utilization = Gauge("engram_cognitive_event_buffer_utilization",
                                     "Fill level of the fullest event ring at the last drain "
                                     "(percent)")
    priming_node_pairs = TopK("engram_priming_node_pairs_total",
                              "Most frequent (source, target) node pairs of traced priming events",
                              ("source_node", "target_node"), k=10)
    interference_episode_pairs = TopK("engram_interference_episode_pairs_total",
                                      "Most frequently interfered-with episodes in traced events",
                                      ("target_episode_id",), k=10)
    overhead_percent = Gauge("engram_metrics_overhead_percent",
                             "Estimated share of recording threads' time spent recording "
                             "metrics and events (see TraceCollector)")

    # -- recording (kernels and Python) -------------------------------------------

    @kernel_method
    def record_priming(self, priming_type: PrimingType, strength):
        if self.priming_events.inc(priming_type):
            self.priming_strength.observe(strength)

    @kernel_method
    def record_interference(self, interference_type: InterferenceType, magnitude):
        if interference_type == InterferenceType.PROACTIVE:
            self.proactive_interference.inc()
            self.proactive_magnitude.observe(magnitude)
        elif interference_type == InterferenceType.RETROACTIVE:
            self.retroactive_interference.inc()
            self.retroactive_magnitude.observe(magnitude)
        elif interference_type == InterferenceType.FAN:
            self.fan_effect_interference.inc()
            self.fan_effect_magnitude.observe(magnitude)
        else:
            self.count_invalid()
            return
        self.interference_detections.inc()

    @kernel_method
    def record_reconsolidation(self, window_position):
        self.reconsolidation_events.inc()
        if 0.0 <= window_position <= 1.0:
            self.reconsolidation_window_hits.inc()
        else:
            self.reconsolidation_window_misses.inc()

    @kernel_method
    def record_reconsolidation_modification(self):
        self.reconsolidation_modifications.inc()

    @kernel_method
    def record_reconsolidation_rejection(self, reason: RejectionReason):
        if self.reconsolidation_rejections.inc(reason):
            self.reconsolidation_window_misses.inc()

    @kernel_method
    def record_reconsolidation_plasticity(self, factor):
        self.reconsolidation_plasticity.observe(factor)

    @kernel_method
    def record_false_memory(self):
        self.false_memory_generations.inc()

    @kernel_method
    def record_drm_critical_lure(self):
        self.drm_critical_lure_recalls.inc()

    @kernel_method
    def record_drm_list_item(self):
        self.drm_list_item_recalls.inc()

    @kernel_method
    def record_reconstruction_confidence(self, confidence):
        self.reconstruction_confidence.observe(confidence)

    @kernel_method
    def record_massed_practice(self):
        self.massed_practice.inc()

    @kernel_method
    def record_distributed_practice(self):
        self.distributed_practice.inc()

    @kernel_method
    def record_retention_improvement(self, improvement):
        self.retention_improvement.observe(improvement)

    def collector_hook(self):
        """What a TraceCollector given ``metrics=`` calls to keep the tracing-health metrics."""
        return CognitiveHealth(self)

    # -- queries (Python) ---------------------------------------------------------

    def priming_events_total(self) -> int:
        return self.priming_events.total

    def priming_type_count(self, priming_type) -> int:
        return self.priming_events.value(as_enum(PrimingType, priming_type, "priming_type"))

    def priming_mean_strength(self) -> float:
        """Mean priming strength; 0.0 before the first event."""
        h = self.priming_strength.read()
        return h.mean if h.count else 0.0

    def interference_detections_total(self) -> int:
        return self.interference_detections.value()

    def interference_count(self, interference_type) -> int:
        handle = {InterferenceType.PROACTIVE: self.proactive_interference,
                  InterferenceType.RETROACTIVE: self.retroactive_interference,
                  InterferenceType.FAN: self.fan_effect_interference}[
            as_enum(InterferenceType, interference_type, "interference_type")]
        return handle.value()

    def reconsolidation_events_total(self) -> int:
        return self.reconsolidation_events.value()

    def reconsolidation_window_hit_rate(self) -> float:
        """hits / (hits + misses); 0.0 when there were none."""
        snap = self.collect()
        hits = snap["reconsolidation_window_hits"].get()
        misses = snap["reconsolidation_window_misses"].get()
        return hits / (hits + misses) if hits + misses else 0.0

    def reconsolidation_rejection_count(self, reason) -> int:
        return self.reconsolidation_rejections.value(as_enum(RejectionReason, reason, "reason"))

    def false_memory_generations_total(self) -> int:
        return self.false_memory_generations.value()

    def drm_false_alarm_rate(self) -> float:
        """critical-lure recalls / (lure + list-item recalls); 0.0 when there were none."""
        snap = self.collect()
        lures = snap["drm_critical_lure_recalls"].get()
        items = snap["drm_list_item_recalls"].get()
        return lures / (lures + items) if lures + items else 0.0

    def spacing_ratio(self) -> float:
        """distributed / massed repetitions; 0.0 when there was no massed practice."""
        snap = self.collect()
        massed = snap["massed_practice"].get()
        return snap["distributed_practice"].get() / massed if massed else 0.0

    def histogram(self, name: str) -> HistogramData:
        """A histogram by attribute name (``priming_strength``) or metric name."""
        specs = self.metrics()
        attr = name if name in specs else next(
            (a for a, s in specs.items() if s.name in (name, f"engram_{name}")), None)
        if attr is None or specs[attr].kind is not HISTOGRAM:
            names = [a for a, s in specs.items() if s.kind is HISTOGRAM]
            raise ValueError(f"no histogram {name!r}; histograms: {names}")
        return getattr(self, attr).read()
