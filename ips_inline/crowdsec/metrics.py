"""The agent's figures as Prometheus families, computed at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .decisions import REJECT_REASONS
from .watcher import PUSH_RESULTS

if TYPE_CHECKING:
    from .agent import Agent


def families(agent: Agent) -> Iterator[Metric]:
    if agent.up is not None:
        yield GaugeMetricFamily("ips_inline_crowdsec_lapi_up",
                                "1 if the last exchange with CrowdSec's LAPI worked, else 0",
                                value=agent.up)
    decisions = GaugeMetricFamily("ips_inline_crowdsec_decisions",
                                  "CrowdSec decisions enforced now, by origin and scope",
                                  labels=["origin", "scope"])
    if agent.bouncer is not None:
        for (origin, scope), n in sorted(agent.bouncer.gauge().items()):
            decisions.add_metric([origin, scope], n)
    yield decisions
    pulls = CounterMetricFamily("ips_inline_crowdsec_pulls_total",
                                "Decision stream pulls from LAPI, by result", labels=["result"])
    for result, n in agent.pulls.items():
        pulls.add_metric([result], n)
    yield pulls
    rejected = CounterMetricFamily("ips_inline_crowdsec_decisions_rejected_total",
                                   "LAPI decisions not enforced, by reason", labels=["reason"])
    counts = agent.bouncer.rejected if agent.bouncer is not None else {}
    for reason in REJECT_REASONS:
        rejected.add_metric([reason], counts.get(reason, 0))
    yield rejected
    yield from _push_families(agent)


def _push_families(agent: Agent) -> Iterator[Metric]:
    pushes = CounterMetricFamily("ips_inline_crowdsec_pushes_total",
                                 "Bans and unbans pushed to LAPI, by result", labels=["result"])
    watcher = agent.watcher
    for result in PUSH_RESULTS:
        if watcher is None:
            n = 0
        elif result == "dropped":  # counted in the state file: workers and the CLI drop too
            n = watcher.dropped
        else:
            n = watcher.results[result]
        pushes.add_metric([result], n)
    yield pushes
    if watcher is not None:
        yield GaugeMetricFamily("ips_inline_crowdsec_push_queue",
                                "Pushes waiting for LAPI (state file queue)",
                                value=watcher.queued)
