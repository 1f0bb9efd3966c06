"""``/metrics``: the running runs' GPU, host and metric values in Prometheus's text format, for Prometheus to scrape
(behind the board's auth like every route). Each scrape makes one read (``RunStore.live_runs``); a finished run is
gone from the next scrape. The gauges and their names come from the read side (:func:`sacred_gpu.read.gauges`);
``prometheus-client`` writes them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dashboard.board import current_board
from sacred_gpu.read import ReadError, gauges

logger = logging.getLogger(__name__)

ROUTE = "/metrics"


class LiveRunsCollector(Collector):
    """The gauges of the board's running runs, read at each scrape. A scrape while the database cannot be read has
    only ``sacred_board_database_up`` 0 (Prometheus keeps the series' last values as stale)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("sacred_board_database_up", "1 when this scrape could read the runs, else 0")
        try:
            families = gauges(current_board().store.live_runs())
        except ReadError as error:
            logger.warning("/metrics: reading the running runs failed: %s", error)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        for family in families:
            gauge = GaugeMetricFamily(family.name, family.help, labels=list(family.labels))
            for labels, value in family.samples:
                gauge.add_metric(list(labels), value)
            yield gauge


def metrics() -> Response:
    """The route: the exposition of a registry holding only :class:`LiveRunsCollector` (no process metrics of the
    board's own)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LiveRunsCollector())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def register(server: Any) -> None:
    """Serve :data:`ROUTE` on the board's Flask ``server``."""
    server.add_url_rule(ROUTE, "prometheus_metrics", metrics)
