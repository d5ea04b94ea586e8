"""``edgeinfer watch``: tail detection events (and ``--status`` / ``--stats``) from a broker (debugging).

On a terminal each message is a line in the format of ``edgeinfer events`` (local time and zone);
piped, or with ``--json``, each is the payload as received, one per line (``--text`` forces the lines).
What it subscribed to is said on stderr.

Broker settings come from ``-c FILE`` (its ``mqtt:`` section and ``device``) and are overridden by the
flags. The password is read from ``--password-file`` or ``$EDGEINFER_MQTT_PASSWORD``, never from argv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeinfer.errors import EdgeInferError

if TYPE_CHECKING:
    from edgeinfer.config import MQTTConfig


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "watch",
        help="print detection events (and status / stats) from the MQTT broker",
        description="Subscribe to what edgeinfer publishes and print it: detection events by default, "
        "--status and --stats for those topics instead (add --detections to keep the events too).",
    )
    parser.add_argument("-c", "--config", type=Path, help="config file (its mqtt: section and device)")
    parser.add_argument("--camera", default="+", help="only this camera (+: all)")
    parser.add_argument("--device", help="only this device (default: the config's, or all)")
    parser.add_argument("--host", help="broker host (default: the config's, or localhost)")
    parser.add_argument("--port", type=int, help="broker port (default: the config's, or 1883)")
    parser.add_argument(
        "--protocol", choices=["3.1.1", "5"], help="MQTT version (default: the config's, or 3.1.1)"
    )
    parser.add_argument("--username", help="broker user (default: the config's, or none)")
    parser.add_argument("--password-file", type=Path, help="or set EDGEINFER_MQTT_PASSWORD")
    parser.add_argument("--tls-ca", type=Path, help="CA file; enables TLS")
    parser.add_argument("--prefix", help="topic prefix (default: the config's, or edgeinfer)")
    parser.add_argument(
        "--status", action="store_true", help="watch {prefix}/{device}/status (online/offline, retained)"
    )
    parser.add_argument(
        "--stats", action="store_true", help="watch {prefix}/{device}/stats (fps, drops, latency, backlog)"
    )
    parser.add_argument(
        "--detections",
        action="store_true",
        help="watch the detection events as well (they are watched anyway without --status/--stats)",
    )
    form = parser.add_mutually_exclusive_group()
    form.add_argument(
        "--json", action="store_true", help="print each payload as received (the default when piped)"
    )
    form.add_argument(
        "--text",
        action="store_true",
        help="print lines as `edgeinfer events` does (the default on a terminal)",
    )
    parser.add_argument("--count", type=int, help="exit after this many messages (default: no limit)")
    parser.add_argument("--timeout", type=float, help="exit after this many seconds (default: none)")
    parser.set_defaults(func=run_watch)


def _settings(args: argparse.Namespace) -> tuple[MQTTConfig, str]:
    from pydantic import SecretStr

    from edgeinfer.config import MQTTConfig, TLSConfig, load_config

    cfg, device = MQTTConfig(), "+"
    if args.config is not None:
        config = load_config(args.config)
        cfg, device = config.mqtt or cfg, config.device
    update: dict[str, Any] = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "protocol": args.protocol,
            "username": args.username,
        }.items()
        if v is not None
    }
    if args.prefix:
        update["topic_prefix"] = args.prefix
    password = os.environ.get("EDGEINFER_MQTT_PASSWORD")
    if args.password_file is not None:
        password = args.password_file.read_text(encoding="utf-8").strip()
    if password is not None:
        update["password"] = SecretStr(password)
    if args.tls_ca is not None:
        update["tls"] = TLSConfig(ca_file=args.tls_ca)
    cfg = MQTTConfig.model_validate({**cfg.model_dump(), **update})
    return cfg, args.device or device


def topics_of(args: argparse.Namespace, prefix: str, device: str) -> list[str]:
    """The subscriptions: detection events unless only --status/--stats were asked for."""
    topics = []
    if args.detections or not (args.status or args.stats):
        topics.append(f"{prefix}/{device}/{args.camera}/detections")
    if args.status:
        topics.append(f"{prefix}/{device}/status")
    if args.stats:
        topics.append(f"{prefix}/{device}/stats")
    return topics


def _percentiles(latency: Any) -> str:
    if not isinstance(latency, dict) or latency.get("p50") is None:
        return "e2e -"
    p99 = latency.get("p99")
    return f"e2e p50 {latency['p50']:.1f} ms" + (f" p99 {p99:.1f} ms" if p99 is not None else "")


def format_message(topic: str, payload: bytes | bytearray, *, all_devices: bool) -> str:
    """One line per message, as ``edgeinfer events`` prints events: local time and zone first.

    Raises ValueError for a detection event or stats payload that is not a JSON object.
    """
    from edgeinfer.commands.events import format_doc, local_time
    from edgeinfer.timefmt import rfc3339_local_ms, rfc3339_now

    levels = topic.split("/")
    kind = levels[-1]
    if kind == "status" and len(levels) >= 3:
        text = payload.decode("utf-8", errors="replace").strip()
        return f"{rfc3339_local_ms(time.time_ns())}  {levels[-2]:<12} status {text}"
    doc = json.loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if kind == "stats":
        fps = " ".join(f"{cam}={v:.1f}" for cam, v in (doc.get("fps") or {}).items()) or "-"
        drops = sum(v for v in (doc.get("drops") or {}).values() if isinstance(v, int | float))
        backlog = " ".join(f"{k}={v}" for k, v in (doc.get("store_backlog") or {}).items()) or "-"
        batch = doc.get("batch_size_mean")
        parts = [
            f"fps {fps}",
            f"batch {batch:.2f}" if isinstance(batch, int | float) else "batch -",
            _percentiles(doc.get("latency_ms")),
            f"dropped {drops:g}",
            f"backlog {backlog}",
        ]
        when = local_time(str(doc.get("ts") or rfc3339_now()))
        return f"{when}  {doc.get('device', levels[-2])!s:<12} stats " + " | ".join(parts)
    camera = str(doc.get("camera", levels[-2] if len(levels) >= 2 else "?"))
    if all_devices:
        camera = f"{doc.get('device', levels[-3] if len(levels) >= 3 else '?')}/{camera}"
    return format_doc(doc, camera)


def run_watch(args: argparse.Namespace) -> int:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from pydantic import ValidationError

    from edgeinfer.mqtt.client import configure_paho, protocol_of

    try:
        cfg, device = _settings(args)
    except (EdgeInferError, ValidationError, OSError) as exc:
        print(f"edgeinfer watch: {exc}", file=sys.stderr)
        return 2
    topics = topics_of(args, cfg.topic_prefix, device)
    as_text = args.text or (not args.json and sys.stdout.isatty())
    done = threading.Event()
    received = 0

    def on_connect(client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            print(f"edgeinfer watch: broker refused the connection: {reason}", file=sys.stderr)
            done.set()
        else:
            client.subscribe([(topic, 1) for topic in topics])
            print(
                f"edgeinfer watch: subscribed to {', '.join(topics)} on {cfg.host}:{cfg.port}"
                f" (MQTT {cfg.protocol}{', TLS' if cfg.tls else ''}); Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        nonlocal received
        try:
            if as_text:
                line = format_message(msg.topic, msg.payload, all_devices=device == "+")
            elif msg.topic.endswith("/status"):
                line = msg.payload.decode("utf-8", errors="replace")
            else:
                line = json.dumps(json.loads(msg.payload), separators=(",", ":"))
        except (ValueError, KeyError, TypeError):
            print(f"edgeinfer watch: not an edgeinfer payload on {msg.topic}", file=sys.stderr)
            return
        print(line, flush=True)
        received += 1
        if args.count is not None and received >= args.count:
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol_of(cfg))
    configure_paho(client, cfg)
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(cfg.host, cfg.port, cfg.keepalive)
    except OSError as exc:
        print(f"edgeinfer watch: cannot connect to {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    client.loop_start()
    try:
        done.wait(args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    return 1 if args.count is not None and received < args.count else 0
