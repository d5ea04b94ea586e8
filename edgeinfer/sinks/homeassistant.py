"""Home Assistant MQTT discovery: entities for each camera's object counts, announced through the broker.

Per camera, following Home Assistant's discovery conventions (``{discovery_prefix}/{component}/{node_id}/
{object_id}/config``, retained; an empty retained payload removes the entity):

- a ``sensor`` per label: the number of tracked objects of that label in the whole frame, from the
  retained count topic ``{prefix}/{device}/{camera}/all/{label}/count``;
- a ``binary_sensor`` "object present" (device class ``occupancy``): on while any object is tracked,
  from ``{prefix}/{device}/{camera}/all/all/count``.

Every entity belongs to one Home Assistant device per edgeinfer device (node id ``edgeinfer_{device}``)
and is available while the daemon's retained ``{prefix}/{device}/status`` says ``online`` (its last will
says ``offline``).

Removing entities: on each connection the publisher subscribes to ``{discovery_prefix}/+/{node_id}/+/
config``; the broker sends the configs it retains for this node, and any that is not in the current set
(a camera or label no longer configured) is cleared with an empty retained payload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from edgeinfer import __version__
from edgeinfer.config import CameraConfig, HomeAssistantConfig
from edgeinfer.config.schema import ALL

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
COMPONENTS = ("sensor", "binary_sensor")


def _safe(text: str) -> str:
    """An id Home Assistant accepts in a discovery topic: [A-Za-z0-9_-]."""
    return _UNSAFE.sub("_", text)


@dataclass(frozen=True, slots=True)
class Discovery:
    """The discovery configs of one device's cameras."""

    cfg: HomeAssistantConfig
    topic_prefix: str
    device: str
    cameras: Sequence[tuple[str, Sequence[str]]]  # (camera, labels)
    model: str = ""

    @property
    def node_id(self) -> str:
        return f"edgeinfer_{_safe(self.device)}"

    @property
    def subscription(self) -> str:
        """The filter that finds every config this node has retained at the broker."""
        return f"{self.cfg.discovery_prefix}/+/{self.node_id}/+/config"

    def configs(self) -> dict[str, str]:
        """Topic -> JSON payload of every entity of the configured cameras."""
        base = f"{self.topic_prefix}/{self.device}"
        common = {
            "availability_topic": f"{base}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [self.node_id],
                "name": f"edgeinfer {self.device}",
                "manufacturer": "edgeinfer",
                "model": self.model or "edgeinfer",
                "sw_version": __version__,
            },
            "origin": {"name": "edgeinfer", "sw_version": __version__},
        }
        out: dict[str, str] = {}
        for camera, labels in self.cameras:
            for label in labels:
                object_id = _safe(f"{camera}_{label}_count")
                out[self._topic("sensor", object_id)] = _dumps(
                    {
                        "name": f"{camera} {label} count",
                        "unique_id": f"{self.node_id}_{object_id}",
                        "state_topic": f"{base}/{camera}/{ALL}/{label}/count",
                        "state_class": "measurement",
                        "unit_of_measurement": "objects",
                        "icon": "mdi:counter",
                        **common,
                    }
                )
            object_id = _safe(f"{camera}_object_present")
            out[self._topic("binary_sensor", object_id)] = _dumps(
                {
                    "name": f"{camera} object present",
                    "unique_id": f"{self.node_id}_{object_id}",
                    "state_topic": f"{base}/{camera}/{ALL}/{ALL}/count",
                    "value_template": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}",
                    "device_class": "occupancy",
                    **common,
                }
            )
        return out

    def is_ours(self, topic: str) -> bool:
        parts = topic.split("/")
        prefix_parts = self.cfg.discovery_prefix.split("/")
        n = len(prefix_parts)
        return (
            len(parts) == n + 4
            and parts[:n] == prefix_parts
            and parts[n] in COMPONENTS
            and parts[n + 1] == self.node_id
            and parts[n + 3] == "config"
        )

    def stale(self, retained: set[str]) -> list[str]:
        """The retained config topics of this node that the current config no longer has."""
        current = self.configs()
        return sorted(t for t in retained if self.is_ours(t) and t not in current)

    def _topic(self, component: str, object_id: str) -> str:
        return f"{self.cfg.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"


def discovery_for(
    cfg: HomeAssistantConfig,
    topic_prefix: str,
    device: str,
    cameras: Sequence[CameraConfig],
    labels: Sequence[str],
    model: str = "",
) -> Discovery:
    """The discovery of these cameras: per camera its allow-listed labels, or every label of the model."""
    return Discovery(
        cfg,
        topic_prefix,
        device,
        [
            (c.name, list(c.classes) if c.classes is not None else list(labels))
            for c in cameras
            if c.tracking.enabled
        ],
        model,
    )


def _dumps(body: dict[str, object]) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True)
