"""``edgeinfer watch``: tail detection events from a broker, one JSON document per line (debugging).

Broker settings come from ``-c FILE`` (its ``mqtt:`` section and ``device``) and are overridden by the
flags. The password is read from ``--password-file`` or ``$EDGEINFER_MQTT_PASSWORD``, never from argv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeinfer.errors import EdgeInferError

if TYPE_CHECKING:
    from edgeinfer.config import MQTTConfig


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("watch", help="print detection events from the MQTT broker")
    parser.add_argument("-c", "--config", type=Path, help="config file (its mqtt: section and device)")
    parser.add_argument("--camera", default="+", help="only this camera (default: all)")
    parser.add_argument("--device", help="only this device (default: the config's, or all)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--protocol", choices=["3.1.1", "5"])
    parser.add_argument("--username")
    parser.add_argument("--password-file", type=Path, help="or set EDGEINFER_MQTT_PASSWORD")
    parser.add_argument("--tls-ca", type=Path, help="CA file; enables TLS")
    parser.add_argument("--prefix", help="topic prefix (default: the config's, or edgeinfer)")
    parser.add_argument("--count", type=int, help="exit after this many events")
    parser.add_argument("--timeout", type=float, help="exit after this many seconds")
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
    topic = f"{cfg.topic_prefix}/{device}/{args.camera}/detections"
    done = threading.Event()
    received = 0

    def on_connect(client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            print(f"edgeinfer watch: broker refused the connection: {reason}", file=sys.stderr)
            done.set()
        else:
            client.subscribe(topic, qos=1)

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        nonlocal received
        try:
            event = json.loads(msg.payload)
        except ValueError:
            print(f"edgeinfer watch: not JSON on {msg.topic}", file=sys.stderr)
            return
        print(json.dumps(event, separators=(",", ":")), flush=True)
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
