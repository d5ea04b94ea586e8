"""The small exception hierarchy. Library code raises these; only the CLI picks exit codes."""


class EdgeInferError(Exception):
    """Base class: a problem the user can act on. The CLI prints it as one line, no traceback."""


class ConfigError(EdgeInferError):
    """Invalid configuration: the message names the YAML path and what was expected."""


class ModelError(EdgeInferError):
    """A model file is missing, unreadable, or of a layout we cannot decode."""


class BackendError(EdgeInferError):
    """An inference runtime is missing or failed."""


class SourceError(EdgeInferError):
    """A camera or file source could not be opened or read."""


class SinkError(EdgeInferError):
    """An output (MQTT, InfluxDB) failed in a way that needs attention."""


class StoreError(EdgeInferError):
    """The local store could not be opened or written."""
