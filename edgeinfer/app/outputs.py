"""Outputs and sensor input: the assembly seam the daemon calls.

``build_outputs`` returns the sensor context (always, empty without MQTT) and the components to run:
each has a ``name`` and ``async run(stop)`` that runs until ``stop`` is set, then flushes for a few
seconds at most and returns. Nothing is built for a section (``mqtt:``, ``influxdb:``) that is absent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from edgeinfer.config import Config
from edgeinfer.sensors.context import SensorContext
from edgeinfer.sensors.input import SensorInput
from edgeinfer.sensors.triggers import Triggers
from edgeinfer.store.sqlite import AsyncStore

__all__ = ["Component", "Outputs", "SensorContext", "build_outputs"]


class Component(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


@dataclass
class Outputs:
    context: SensorContext
    components: list[Component] = field(default_factory=list)


def build_outputs(
    config: Config,
    store: AsyncStore,
    registry: CollectorRegistry,
    stats: Callable[[], dict[str, Any]],
    on_trigger: Callable[[str, float, float], None],
    *,
    labels: Sequence[str] = (),
    model: str = "",
) -> Outputs:
    """The components for the configured outputs. Raises ConfigError for a bad sensor topic template."""
    # Each output is imported only when configured: influxdb-client alone takes ~16 MB and up to a second
    # to import, and a daemon without InfluxDB should not pay for it.
    outputs = Outputs(context=SensorContext())
    forwarder = None
    if config.influxdb is not None:
        from edgeinfer.sinks.influx import SINK as INFLUX_SINK
        from edgeinfer.sinks.influx import InfluxForwarder

        forwarder = InfluxForwarder(config.influxdb, store, registry)
    if config.mqtt is not None:
        from edgeinfer.sinks.mqtt_publisher import SINK, MQTTPublisher

        backlog = [(SINK, "events")] + ([(INFLUX_SINK, "points")] if forwarder else [])
        discovery = None
        if config.homeassistant is not None:  # labels: the detector's, for the per-label count sensors
            from edgeinfer.sinks.homeassistant import discovery_for

            prefix = config.mqtt.topic_prefix
            discovery = discovery_for(
                config.homeassistant, prefix, config.device, config.cameras, labels, model
            )
        outputs.components.append(
            MQTTPublisher(
                config.mqtt,
                config.device,
                store,
                registry,
                stats,
                backlog_sinks=tuple(backlog),
                discovery=discovery,
            )
        )
        if config.mqtt.sensors:
            triggers = Triggers(config.triggers, on_trigger) if config.triggers else None
            outputs.components.append(
                SensorInput(config.mqtt, config.device, store, registry, outputs.context, triggers)
            )
    if forwarder is not None:
        outputs.components.append(forwarder)
    return outputs
