"""What several verbs share: option values checked by the config's own rules, the timing-only warning.

Standard library only at import time (the parser is built from these on ``--help``); pydantic and the
model manifest are imported when a value is checked or a model is used.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("edgeinfer")


def config_value(model: str, field: str) -> Callable[[str], Any]:
    """An argparse ``type`` that accepts exactly what ``edgeinfer.config.<model>.<field>`` accepts.

    The value is validated by the pydantic model itself, so ``detect --conf`` and ``detector.conf``
    can never disagree: ``--conf 1.5`` fails the way ``conf: 1.5`` in a config file does.
    """

    def convert(text: str) -> Any:
        import importlib

        from pydantic import ValidationError

        cls = getattr(importlib.import_module("edgeinfer.config"), model)
        try:
            validated = cls.model_validate({field: text})
        except ValidationError as exc:
            problems = [e["msg"] for e in exc.errors() if tuple(e["loc"][:1]) == (field,)]
            message = "; ".join(problems) or str(exc)
            raise argparse.ArgumentTypeError(f"{text!r}: {message}") from None
        return getattr(validated, field)

    convert.__name__ = field  # argparse names the type in its "invalid <name> value" message
    return convert


def listen_address(text: str) -> str:
    """HOST:PORT as ``http.listen`` takes it, with the port in range."""
    value: str = config_value("HTTPConfig", "listen")(text)
    port = int(value.rsplit(":", 1)[1])
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 1-65535")
    return value


def bundled_entry_of(model: str | Path) -> dict[str, Any] | None:
    """The manifest entry of a bundled model named by ``model`` (a name, or a path to one of its files)."""
    from edgeinfer.detect.assets import RENAMED, bundled_dir, manifest

    spec = str(model)
    data = manifest()
    if spec == "bundled" or ("/" not in spec and not Path(spec).suffix):
        wanted = data["default"] if spec == "bundled" else RENAMED.get(spec, spec)
        return next((dict(m) for m in data["models"] if m["name"] == wanted), None)
    try:
        path = Path(spec).expanduser().resolve()
        home = bundled_dir().resolve()
    except OSError:
        return None
    if path.parent != home:
        return None
    for entry in data["models"]:
        files = {entry["file"], *(v for v in (entry.get("siblings") or {}).values() if isinstance(v, str))}
        if path.name in files:
            return dict(entry)
    return None


def warn_if_timing_only(model: str | Path) -> bool:
    """Log a WARNING when ``model`` is a bundled model that was never trained; True if it is one."""
    try:
        entry = bundled_entry_of(model)
    except Exception:  # a missing manifest is for whoever opens the model to report
        return False
    if entry is None or entry.get("status") != "timing-only":
        return False
    trained = ", ".join(["bundled", *(m["name"] for m in _models() if m.get("status") == "trained")])
    logger.warning(
        "model %s is timing-only: it was never trained and finds nothing (it exists for benchmarks); "
        "for detections use %s",
        entry["name"],
        trained,
    )
    return True


def _models() -> list[dict[str, Any]]:
    from edgeinfer.detect.assets import manifest

    models: list[dict[str, Any]] = manifest()["models"]
    return models
