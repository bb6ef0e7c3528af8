"""Dask integration: a metric set per worker, served on the worker's own ``/metrics``.

Needs ``pip install 'engram-numba[dask]'`` (``distributed``, ``prometheus_client``)::

    from engram_numba.dask import MetricsPlugin, worker_metrics

    client.register_plugin(MetricsPlugin(ServerMetrics))

    def task(chunk):
        m = worker_metrics(ServerMetrics)       # this worker's set
        return kernel(m, chunk)                 # records from numba code

Each worker builds one instance of the set with the constant label
``worker=<worker name>`` and registers a :class:`~.export.MetricSetCollector`
for it in prometheus_client's default registry, which is what Dask's worker
``/metrics`` endpoint serves: a Prometheus that already scrapes the workers gets
the kernel metrics with no other change.  ``sum by (...)`` over the ``worker``
label gives the cluster's totals.

Gathering at one place instead: ``MetricsPlugin(ServerMetrics,
directory=DIR)`` puts each worker's set in a file in ``DIR`` (see
:mod:`.metrics.directory`, one machine), and ``SchedulerMetricsPlugin(DIR)``
(``client.register_plugin``) serves their sum on the scheduler's ``/metrics``,
files of exited workers compacted.  The class must be importable on the
workers (defined in a module, not in ``__main__`` of a notebook).
"""

from __future__ import annotations

try:
    from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("engram_numba.dask needs distributed: "
                      "pip install 'engram-numba[dask]'") from exc

__all__ = ["MetricsPlugin", "SchedulerMetricsPlugin", "worker_metrics"]


def _registry():
    import prometheus_client
    return prometheus_client.REGISTRY


_shared = {}      # this process's collector of worker sets (workers may share a process)


def _add(metrics) -> None:
    """Serve ``metrics`` from this process's registry (one collector for every worker
    of the process, so that their families merge instead of clashing)."""
    from .export.prometheus import MetricSetCollector
    collector = _shared.get("collector")
    if collector is None:
        collector = _shared["collector"] = MetricSetCollector(metrics)
        _registry().register(collector)
    else:
        collector.metric_sets = collector.metric_sets + (metrics,)


def _remove(metrics) -> None:
    collector = _shared.get("collector")
    if collector is None:
        return
    collector.metric_sets = tuple(m for m in collector.metric_sets if m is not metrics)
    if not collector.metric_sets:
        _registry().unregister(collector)
        del _shared["collector"]


class MetricsPlugin(WorkerPlugin):
    """Give every worker an instance of ``set_class``, labelled with the worker's name
    and served on the worker's own ``/metrics``; tasks get it with ``worker_metrics()``.

    ``label``: the constant label naming the worker (default ``"worker"``);
    ``directory``: create each worker's set as a file in that directory (``None``:
    in memory, or ``$ENGRAM_NUMBA_METRICS_DIR`` when set); ``register``: add the
    collector to the worker's Prometheus registry (default ``True``).
    """

    def __init__(self, set_class, *, label: str = "worker", directory=None,
                 register: bool = True):
        from .metrics import MetricSet
        if not (isinstance(set_class, type) and issubclass(set_class, MetricSet)):
            raise TypeError(f"MetricsPlugin needs a MetricSet subclass, got {set_class!r}")
        set_class._check_const_labels({label: "x"})          # a usable label name
        self.set_class = set_class
        self.label = label
        self.directory = None if directory is None else str(directory)
        self.register = bool(register)
        self.name = f"engram-numba-{set_class.__module__}.{set_class.__qualname__}"
        self.metrics = None

    def setup(self, worker):
        labels = {self.label: str(worker.name)}
        if self.directory is not None:
            self.metrics = self.set_class.create_in(self.directory, const_labels=labels)
        else:
            self.metrics = self.set_class(const_labels=labels)
        if self.register:
            _add(self.metrics)

    def teardown(self, worker):
        if self.metrics is not None and self.register:
            _remove(self.metrics)


def worker_metrics(set_class):
    """The calling worker's instance of ``set_class`` (inside a task)."""
    from distributed import get_worker
    worker = get_worker()
    for plugin in worker.plugins.values():
        if isinstance(plugin, MetricsPlugin) and plugin.set_class is set_class \
                and plugin.metrics is not None:
            return plugin.metrics
    raise LookupError(f"no MetricsPlugin({set_class.__name__}) on worker {worker.name}: "
                      f"client.register_plugin(MetricsPlugin({set_class.__name__})) first")


class SchedulerMetricsPlugin(SchedulerPlugin):
    """Serve the sum of a directory of worker sets on the scheduler's ``/metrics``."""

    def __init__(self, directory, *, const_labels=None):
        from .metrics import MetricSet
        MetricSet._check_const_labels(const_labels)          # bad labels: at once
        self.directory = str(directory)
        self.const_labels = const_labels
        self.name = f"engram-numba-directory-{self.directory}"
        self._collector = None

    async def start(self, scheduler):
        import os

        from .export.prometheus import MetricSetCollector
        from .metrics.directory import MetricsDirectory
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._collector = MetricSetCollector(MetricsDirectory(self.directory,
                                                              const_labels=self.const_labels))
        _registry().register(self._collector)

    async def close(self):
        if self._collector is not None:
            try:
                _registry().unregister(self._collector)
            except KeyError:
                pass
            self._collector = None
