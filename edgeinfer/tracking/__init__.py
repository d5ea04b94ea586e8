"""Objects, not frames: multi-object tracking and the object lifecycle of each camera.

- :mod:`~edgeinfer.tracking.tracker`: a ByteTrack-style tracker (two-stage association by score,
  Kalman motion in :mod:`~edgeinfer.tracking.kalman`, IoU cost and ``lapx`` assignment in
  :mod:`~edgeinfer.tracking.assign`);
- :mod:`~edgeinfer.tracking.geometry`: zones and lines;
- :mod:`~edgeinfer.tracking.lifecycle`: tracks -> ``new``/``update``/``end``, zone and line events,
  retained counts, ``objects``/``tracks`` points;
- :mod:`~edgeinfer.tracking.snapshots`: each track's best frame as a JPEG.

It runs in the pipeline's finish stage (the outcome builder), per camera, in frame order. Like the rest of
the data plane it never imports the daemon, the sinks or the sensors.
"""

from __future__ import annotations

from edgeinfer.config import Config

__all__ = ["decoder_conf"]


def decoder_conf(config: Config) -> float:
    """The score the detector should keep detections from: ``detector.conf``, or lower where a tracking
    camera's ``low_conf`` asks for it (ByteTrack's second stage needs the low-score boxes). Events still
    report only detections from ``detector.conf`` on."""
    lows = [c.tracking.low_conf for c in config.cameras if c.tracking.enabled]
    return min([config.detector.conf, *lows])
