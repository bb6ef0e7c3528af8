"""Dask: a metric set per worker, served on each worker's own /metrics (LocalCluster with
worker processes), gathered at the scheduler from a directory, scraped by Prometheus."""

import shutil
import urllib.request

import pytest

distributed = pytest.importorskip("distributed")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from engram_numba.dask import MetricsPlugin, SchedulerMetricsPlugin  # noqa: E402

from .dask_tasks import TaskMetrics, task  # noqa: E402
from .processes import wait_for  # noqa: E402


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def _items(text):
    """{worker label: items counted} from a /metrics page."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "dask_task_items_total":
                out[s.labels.get("worker", "")] = s.value
    return out


@pytest.fixture(scope="module")
def cluster():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                       worker_dashboard_address="127.0.0.1:0")
    client = distributed.Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


def _worker_urls(client):
    info = client.scheduler_info()["workers"]
    return {w["name"]: f"http://127.0.0.1:{w['services']['dashboard']}/metrics"
            for w in info.values()}


def test_each_worker_serves_its_kernels_metrics_with_exact_totals(cluster):
    _, client = cluster
    client.register_plugin(MetricsPlugin(TaskMetrics))
    sizes = [100 + k for k in range(40)]
    futures = client.map(task, sizes, pure=False)
    client.gather(futures)
    urls = _worker_urls(client)
    assert len(urls) == 2
    per_worker = {}
    for name, url in urls.items():
        got = _items(_get(url))
        assert list(got) == [str(name)], got           # the worker's own series, labelled
        per_worker[name] = got[str(name)]
    assert sum(per_worker.values()) == sum(sizes)
    assert all(v > 0 for v in per_worker.values()), per_worker     # both workers took part
    # the histogram reached /metrics as well, through the same collector
    text = _get(next(iter(urls.values())))
    assert "dask_task_item_size_bucket" in text and "dask_task_item_size_count" in text


def test_worker_metrics_outside_a_plugin_is_a_clear_error(cluster):
    from engram_numba import Counter, MetricSet
    from engram_numba.dask import worker_metrics
    _, client = cluster

    def probe():
        class Other(MetricSet, name="other"):
            n = Counter("other_n", "n")
        try:
            worker_metrics(Other)
        except LookupError as exc:
            return str(exc)
        return "no error"
    assert "register_plugin" in client.submit(probe, pure=False).result()
    with pytest.raises(TypeError, match="MetricSet subclass"):
        MetricsPlugin(dict)


def test_gathered_at_the_scheduler_from_a_directory(tmp_path):
    directory = tmp_path / "sets"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                  worker_dashboard_address="127.0.0.1:0") as cluster, \
            distributed.Client(cluster) as client:
        client.register_plugin(SchedulerMetricsPlugin(directory))
        client.register_plugin(MetricsPlugin(TaskMetrics, directory=directory,
                                             register=False))
        sizes = [50] * 20
        client.gather(client.map(task, sizes, pure=False))
        port = cluster.scheduler.http_server.port
        got = _items(_get(f"http://127.0.0.1:{port}/metrics"))
        assert got == {"": 1000}, got             # the sum over the workers
        assert len(list(directory.glob("dask_tasks.*.metrics"))) == 2


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed")
def test_prometheus_scrapes_both_workers_and_sums_the_rate(cluster, tmp_path):
    from .test_prometheus_server import Prometheus
    _, client = cluster
    client.register_plugin(MetricsPlugin(TaskMetrics))
    urls = _worker_urls(client)
    targets = [u.split("/")[2] for u in urls.values()]
    prom = Prometheus(tmp_path, targets[0], extra_targets=targets[1:])
    try:
        wait_for(lambda: sum(t["health"] == "up"
                             for t in prom.api("targets")["activeTargets"]) == 2, timeout=120)

        def recorded():
            return sum(sum(_items(_get(u)).values()) for u in urls.values())

        def answered():
            client.gather(client.map(task, [200] * 4, pure=False))
            result = prom.api("query", query="sum(rate(dask_task_items_total[10s]))")["result"]
            return result and float(result[0]["value"][1]) > 0
        wait_for(answered, timeout=300, interval=0.5)
        total = recorded()
        wait_for(lambda: prom.value("sum(dask_task_items_total)") == total, timeout=120)
        workers = prom.api("query", query="count by (worker) (dask_task_items_total)")["result"]
        assert len(workers) == 2
    finally:
        prom.stop()
