"""The configuration: schema (the contract), loader (YAML, env, line-numbered errors) and unit values."""

from edgeinfer.config.loader import dump_yaml, format_path, load_config
from edgeinfer.config.schema import (
    BatchingConfig,
    CameraConfig,
    Config,
    DetectorConfig,
    HTTPConfig,
    InfluxDBConfig,
    MinIntervalPolicy,
    MQTTConfig,
    SensorSubscription,
    StorageConfig,
    SyntheticSourceConfig,
    TLSConfig,
    TriggerCondition,
    TriggerConfig,
    default_state_dir,
)

__all__ = [
    "BatchingConfig",
    "CameraConfig",
    "Config",
    "DetectorConfig",
    "HTTPConfig",
    "InfluxDBConfig",
    "MQTTConfig",
    "MinIntervalPolicy",
    "SensorSubscription",
    "StorageConfig",
    "SyntheticSourceConfig",
    "TLSConfig",
    "TriggerCondition",
    "TriggerConfig",
    "default_state_dir",
    "dump_yaml",
    "format_path",
    "load_config",
]
