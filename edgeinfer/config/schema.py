"""The configuration schema: the user-facing contract.

Every model forbids unknown keys so a typo fails loudly; ``*_file`` secrets are read on validation.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from edgeinfer.config.secrets import REDACTED, URL_REDACTED, has_url_placeholder, redact
from edgeinfer.config.units import ByteSize, Duration
from edgeinfer.detect.backends.names import BackendName


class FieldErrors(ValueError):
    """A validator's errors at keys below the model it validates: ``[(("cameras", 1, "name"), message)]``.

    Pydantic puts a model validator's error at the model itself; the loader reads these to point each
    message at its own key and line instead (``cameras[1].name``, ``mqtt.password_file``).
    """

    def __init__(self, items: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(message for _, message in items))
        self.items = items


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- cameras


class SyntheticSourceConfig(Strict):
    """Moving shapes rendered per frame, with known ground truth (tests, benchmarks)."""

    type: Literal["synthetic"]
    seed: int = Field(1, description="Scene seed; the same seed gives the same frames.")
    width: int = Field(640, ge=192, le=7680, description="Shapes are 40-120 px, so at least 192.")
    height: int = Field(480, ge=192, le=4320)
    objects: int = Field(4, ge=0, le=64, description="Number of moving shapes.")
    prerender: int = Field(
        0, ge=0, description="Render this many frames once and play them forward and back (benchmarks)."
    )


class MinIntervalPolicy(Strict):
    min_interval_s: float = Field(gt=0, description="At most one event per this many seconds.")


EventPolicy = Literal["every_frame", "on_change"] | MinIntervalPolicy
Point = tuple[float, float]
CAMERA_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _refuse_url_placeholder(url: str) -> None:
    if has_url_placeholder(url):
        raise ValueError(
            f"the password in this URL is {URL_REDACTED!r}, which the logs and `config show` print in place "
            "of a password: write the real one, or ${ENV}"
        )


def _refuse_placeholder(value: SecretStr | None, key: str) -> SecretStr | None:
    """``config show`` prints secrets as REDACTED; fed back, that would be used as the secret."""
    if value is not None and value.get_secret_value() == REDACTED:
        raise ValueError(
            f"{REDACTED!r} is how `config show` hides a secret, not the secret: write the real one, "
            f"${{ENV}}, or remove this key and use {key}_file"
        )
    return value


ALL = "all"  # the zone of the whole frame and the label of every label together, in count topics


class ZoneConfig(Strict):
    polygon: list[Point] = Field(description="Polygon in frame pixels, at least 3 points.")
    objects: list[str] | None = Field(None, description="Labels counted in this zone; default: all.")
    filter: bool = Field(
        False, description="Keep only detections inside a filter zone (what the old list form means)."
    )

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, polygon: list[Point]) -> list[Point]:
        if len(polygon) < 3:
            raise ValueError(f"a zone needs at least 3 points, got {len(polygon)}")
        return polygon


class TrackingConfig(Strict):
    """Multi-object tracking (ByteTrack-style) of a camera's detections; see edgeinfer.tracking."""

    enabled: bool = True
    max_age_s: float = Field(2.0, gt=0, description="A track lost for this long ends.")
    min_hits: int = Field(3, ge=1, le=100, description="Frames in a row with a detection to confirm a track.")
    iou: float = Field(0.3, gt=0, lt=1, description="The least IoU for a detection to continue a track.")
    high_conf: float = Field(0.6, gt=0, lt=1, description="Detections from this score start/continue tracks.")
    low_conf: float = Field(
        0.1, gt=0, lt=1, description="Detections from this score (below high_conf) only continue tracks."
    )
    update_interval_s: float = Field(2.0, ge=0, description="At most one `update` per track this often.")
    snapshots: bool = Field(True, description="Keep each track's best-score frame as a JPEG.")
    snapshot_crop: bool = Field(False, description="Keep only the box (with a margin), not the frame.")

    @model_validator(mode="after")
    def _low_below_high(self) -> TrackingConfig:
        if self.low_conf > self.high_conf:
            raise FieldErrors([(("low_conf",), f"must be at most high_conf ({self.high_conf})")])
        return self


class CameraConfig(Strict):
    name: str = Field(pattern=CAMERA_NAME, description="Used in MQTT topics and series tags.")
    source: int | str | SyntheticSourceConfig = Field(
        description="Device index, /dev/videoN, rtsp:// or http:// URL, video file, image folder, "
        "GStreamer pipeline (contains '!'), or {type: synthetic}."
    )
    fps: float | None = Field(None, gt=0, description="Target capture rate; default: as fast as the source.")
    width: int | None = Field(None, gt=0, description="Resolution to request from the device.")
    height: int | None = Field(None, gt=0)
    loop: bool = Field(True, description="Loop video files and image folders at their end.")
    priority: float = Field(1.0, gt=0, description="Weight under overload; higher goes first, none starves.")
    classes: list[str] | None = Field(None, description="Allow-list of labels; default: all.")
    min_score: dict[str, float] = Field(default_factory=dict, description="Per-label score thresholds.")
    zones: dict[str, ZoneConfig] = Field(
        default_factory=dict,
        description="Named zones {name: polygon or {polygon, objects}}; the list form [polygon, ...] keeps "
        "its old meaning: filter zones (a box counts if its bottom-centre is inside one), named zone0, ...",
    )
    lines: dict[str, list[Point]] = Field(
        default_factory=dict, description="Named lines {name: [[x1, y1], [x2, y2]]} for crossing counts."
    )
    tracking: TrackingConfig = TrackingConfig()
    events: EventPolicy = "on_change"
    context: list[str] = Field(default_factory=list, description="Sensor series attached to events.")

    @field_validator("source")
    @classmethod
    def _no_url_placeholder(
        cls, source: int | str | SyntheticSourceConfig
    ) -> int | str | SyntheticSourceConfig:
        if isinstance(source, str):
            _refuse_url_placeholder(source)
        return source

    @field_validator("zones", mode="before")
    @classmethod
    def _named_zones(cls, zones: Any) -> Any:
        if isinstance(zones, list):  # the old form: filter zones, unnamed
            return {f"zone{i}": {"polygon": polygon, "filter": True} for i, polygon in enumerate(zones)}
        if isinstance(zones, dict):
            return {name: {"polygon": z} if isinstance(z, list) else z for name, z in zones.items()}
        return zones

    @field_validator("lines")
    @classmethod
    def _segments(cls, lines: dict[str, list[Point]]) -> dict[str, list[Point]]:
        errors: list[tuple[tuple[str | int, ...], str]] = [
            ((name,), f"a line is 2 points [[x1, y1], [x2, y2]], got {len(points)}")
            for name, points in lines.items()
            if len(points) != 2 or points[0] == points[1]
        ]
        if errors:
            raise FieldErrors(errors)
        return lines

    @model_validator(mode="after")
    def _zone_and_line_names(self) -> CameraConfig:
        errors: list[tuple[tuple[str | int, ...], str]] = []
        for key, names in (("zones", list(self.zones)), ("lines", list(self.lines))):
            for name in names:
                if not re.fullmatch(CAMERA_NAME, name) or name == ALL:
                    errors.append(((key, name), f"{name!r}: expected a name like a camera's (not {ALL!r})"))
                elif key == "lines" and name in self.zones:
                    errors.append(
                        ((key, name), f"{name!r} is a zone's name too: zones and lines share topics")
                    )
        if errors:
            raise FieldErrors(errors)
        return self


# --------------------------------------------------------------------------- detector, batching


Count = Annotated[int, Field(ge=1, le=64)]


class DetectorConfig(Strict):
    backend: BackendName = "auto"
    model: str = Field(
        "bundled", description="'bundled', a bundled model name, or a .tflite/.onnx/.engine path"
    )
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$", description="Refuse a model that differs.")
    labels: Path | None = Field(None, description="Text file (one name per line) or YAML with names:")
    instances: Count | Literal["auto"] = Field(
        "auto",
        description="Runtime instances, each on its own thread; auto: chosen by measurement at first start.",
    )
    threads: Count | Literal["auto"] = Field(
        "auto", description="Runtime threads per instance; auto: chosen with the instances."
    )
    nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Linux: the instances' threads run this much nicer than the daemon's other threads, "
        "which prepare and route their batches and so come first; 0: the same priority.",
    )
    conf: float = Field(0.25, gt=0, lt=1)
    iou: float = Field(0.45, gt=0, le=1)
    max_det: int = Field(300, ge=1, le=10000)
    input_layout: Literal["auto", "NHWC", "NCHW"] = "auto"
    channels: Literal["auto", "RGB", "BGR"] = "auto"
    layout: Literal["auto", "yolov8", "yolov8t", "yolov5", "end2end"] = Field(
        "auto", description="Output layout; auto recognises it from the tensor shape."
    )
    boxes: Literal["auto", "normalized", "pixels"] = Field(
        "auto", description="Box units in the output; auto: normalized for TFLite, pixels otherwise."
    )

    @field_validator("model")
    @classmethod
    def _not_a_directory(cls, model: str) -> str:
        # A bundled name has no '/' and no suffix (as detect.assets.resolve_model reads it); anything else
        # is a path, and a directory there fails deep in the runtime, so say it here, at its line.
        if ("/" in model or Path(model).suffix) and Path(model).expanduser().is_dir():
            raise ValueError(f"{model} is a directory: expected a .tflite, .onnx or .engine model file")
        return model


class BatchingConfig(Strict):
    max_batch_size: int = Field(4, ge=1, le=64, description="1 disables batching.")
    max_delay_ms: float = Field(10.0, ge=0, description="Longest a batch waits after its first frame.")
    max_staleness_ms: float = Field(500.0, gt=0, description="Frames older than this are dropped.")


# --------------------------------------------------------------------------- outputs


def _read_secret_file(path: Path, key: str) -> SecretStr:
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise FieldErrors([((key,), f"cannot read {path}: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise FieldErrors([((key,), f"{path} is not UTF-8 text")]) from None


class TLSConfig(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="Skip hostname verification. Never in production.")


class SensorSubscription(Strict):
    topic: str = Field(description="Topic template: sensors/{site}/{sensor}; '+' and '#' also accepted.")
    measurement: str = Field("sensors", pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")
    format: Literal["json", "value", "line"] = "json"
    measurements: list[str] = Field(
        default_factory=list,
        description="format line: line measurements written as they are; any other is written as measurement.",
    )
    tags: list[str] = Field(default_factory=list, description="JSON keys that become tags.")
    timestamp_key: str | None = Field(None, description="JSON key holding the reading time.")
    qos: Literal[0, 1, 2] = 1

    @field_validator("topic")
    @classmethod
    def _template(cls, topic: str) -> str:
        from edgeinfer.mqtt.topics import TopicTemplate

        TopicTemplate(topic)  # raises ValueError naming the bad level
        return topic


class MQTTConfig(Strict):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(None, description="Default: edgeinfer-{device}.")
    keepalive: int = Field(30, ge=5, le=3600)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: TLSConfig | None = None
    qos: Literal[0, 1, 2] = 1
    topic_prefix: str = Field("edgeinfer", pattern=r"^[^#+]+$")
    stats_interval_s: float = Field(10.0, gt=0)
    session_expiry_s: int = Field(86400, ge=0, description="MQTT 5 session expiry for the sensor session.")
    max_payload_bytes: int = Field(65536, ge=16)
    sensor_queue_size: int = Field(
        2000, ge=1, description="Sensor messages waiting to be stored; more are dropped."
    )
    sensors: list[SensorSubscription] = Field(default_factory=list)

    @field_validator("password")
    @classmethod
    def _not_the_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value, "password")

    @model_validator(mode="after")
    def _password_from_file(self) -> MQTTConfig:
        if self.password is None and self.password_file is not None:
            object.__setattr__(self, "password", _read_secret_file(self.password_file, "password_file"))
        return self


class TriggerCondition(Strict):
    series: str
    above: float | None = None
    below: float | None = None
    equals: float | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> TriggerCondition:
        if (self.above, self.below, self.equals) == (None, None, None):
            raise ValueError("expected one of above, below or equals")
        return self


class TriggerConfig(Strict):
    when: TriggerCondition
    camera: str
    fps: float = Field(gt=0)
    for_s: float = Field(10.0, gt=0)


class InfluxDBConfig(Strict):
    url: str = Field(pattern=r"^https?://")
    org: str = ""
    bucket: str
    token: SecretStr | None = None
    token_file: Path | None = None
    batch_size: int = Field(500, ge=1, le=50000)
    flush_interval_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("token")
    @classmethod
    def _not_the_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value, "token")

    @field_validator("url")
    @classmethod
    def _no_url_placeholder(cls, url: str) -> str:
        _refuse_url_placeholder(url)
        return url

    @model_validator(mode="after")
    def _token_from_file(self) -> InfluxDBConfig:
        if self.token is None and self.token_file is not None:
            object.__setattr__(self, "token", _read_secret_file(self.token_file, "token_file"))
        return self


class StorageConfig(Strict):
    max_bytes: ByteSize = Field(512 * 2**20, ge=2**20)
    retention: Duration = Field(7 * 86400.0, gt=0)
    snapshots_max_bytes: ByteSize = Field(
        64 * 2**20, ge=0, description="Track snapshots (JPEG) in data_dir/snapshots: oldest go first."
    )


class HomeAssistantConfig(Strict):
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[^#+]+$", description="Home Assistant's MQTT discovery prefix."
    )


class HTTPConfig(Strict):
    enabled: bool = True
    listen: str = Field("127.0.0.1:9108", pattern=r"^[^:]*:[0-9]+$")
    live_fps: float = Field(5.0, gt=0, le=30, description="Frames per second of the live view, at most.")
    live_width: int = Field(640, ge=64, le=3840, description="Live view width in pixels, at most.")
    username: str | None = Field(None, min_length=1, description="HTTP basic auth for the page and API.")
    password: SecretStr | None = None
    password_file: Path | None = None

    @field_validator("password")
    @classmethod
    def _not_the_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value, "password")

    @model_validator(mode="after")
    def _password_from_file(self) -> HTTPConfig:
        if self.password is None and self.password_file is not None:
            object.__setattr__(self, "password", _read_secret_file(self.password_file, "password_file"))
        if self.username is not None and self.password is None:
            raise FieldErrors([(("password_file",), "http.username is set: expected password_file too")])
        if self.username is None and self.password is not None:
            raise FieldErrors([(("username",), "a password is set: expected the username it goes with")])
        return self


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edgeinfer"


def _default_cameras() -> list[CameraConfig]:
    from edgeinfer.detect.assets import demo_clip

    return [CameraConfig(name="demo", source=str(demo_clip()), fps=10, events="every_frame")]


class Config(Strict):
    device: str = Field(default_factory=socket.gethostname, pattern=r"^[^/#+]+$")
    data_dir: Path = Field(default_factory=default_state_dir)
    cameras: list[CameraConfig] = Field(default_factory=_default_cameras, min_length=1)
    detector: DetectorConfig = DetectorConfig()
    batching: BatchingConfig = BatchingConfig()
    mqtt: MQTTConfig | None = None
    triggers: list[TriggerConfig] = Field(default_factory=list)
    influxdb: InfluxDBConfig | None = None
    storage: StorageConfig = StorageConfig()
    http: HTTPConfig = HTTPConfig()
    homeassistant: HomeAssistantConfig | None = Field(
        None, description="Publish MQTT discovery configs for Home Assistant (needs mqtt:)."
    )

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        names = [c.name for c in self.cameras]
        errors: list[tuple[tuple[str | int, ...], str]] = []
        if self.homeassistant is not None and self.mqtt is None:
            errors.append((("homeassistant",), "needs an mqtt: section (discovery goes through the broker)"))
        first: dict[str, int] = {}
        for index, name in enumerate(names):
            if name in first:
                errors.append(
                    (
                        ("cameras", index, "name"),
                        f"camera names must be unique, repeated: {name} (also cameras[{first[name]}])",
                    )
                )
            first.setdefault(name, index)
        for index, trigger in enumerate(self.triggers):
            if trigger.camera not in first:
                errors.append(
                    (
                        ("triggers", index, "camera"),
                        f"trigger camera {trigger.camera!r} is not one of {names}",
                    )
                )
        if errors:
            raise FieldErrors(errors)
        return self

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain data: secret-named values as '********', URL passwords as '***'.

        Fed back to the loader, neither placeholder is taken for a secret: both are refused by name.
        """
        data: dict[str, Any] = redact(self.model_dump(mode="json"))
        return data
