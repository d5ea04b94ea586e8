"""``serve``, the loop behind ``edgeinfer run``, in-process with SIGHUPs sent to this process: an unchanged
config is not a restart, a config that validates but cannot start falls back to the one that ran, and
``--duration`` counts across reloads. Real bundled model, synthetic camera, real store."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sqlite3

from edgeinfer.app.reload import serve
from edgeinfer.config import Config
from edgeinfer.store.sqlite import STORE_FILE


def _config(tmp_path, http) -> Config:  # type: ignore[no-untyped-def]
    return Config.model_validate(
        {
            "device": "reload-box",
            "data_dir": str(tmp_path),
            "detector": {"instances": 1, "threads": 1},
            "http": http,
            "cameras": [
                {
                    "name": "cam0",
                    "fps": 10,
                    "events": "every_frame",
                    "source": {"type": "synthetic", "seed": 1},
                }
            ],
        }
    )


def test_an_unchanged_config_is_kept_and_one_that_cannot_start_falls_back(tmp_path, caplog):  # type: ignore[no-untyped-def]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        first = _config(tmp_path, {"enabled": False})
        versions = [first, _config(tmp_path, {"listen": f"127.0.0.1:{port}"})]

        async def main():  # type: ignore[no-untyped-def]
            async def hup_twice() -> None:
                await asyncio.sleep(1.0)
                os.kill(os.getpid(), signal.SIGHUP)  # the same config: nothing to do
                await asyncio.sleep(1.0)
                os.kill(os.getpid(), signal.SIGHUP)  # valid, but its port is taken

            sender = asyncio.create_task(hup_twice())
            summary = await serve(first, load=lambda: versions.pop(0), duration=4.0, status_interval=0.5)
            await sender
            return summary

        with caplog.at_level(logging.INFO, logger="edgeinfer"):
            summary = asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert "reload: the config is valid and unchanged; nothing to do" in messages
    assert "reload:   http.enabled: false -> true" in messages
    assert any(
        m.startswith("reload: cannot start on the new config: http: cannot listen on") for m in messages
    ), messages
    assert sum(m.startswith("running: ") for m in messages) == 2  # the first and the fallback
    assert summary.frames > 0 and summary.events == summary.frames
    assert 4.0 <= summary.seconds < 4.0 + 10.0  # the duration spans the reloads
    with sqlite3.connect(tmp_path / STORE_FILE) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == summary.events
    # the fallback's own events are there too: the last status lines came after the failed start
    failed = next(i for i, m in enumerate(messages) if m.startswith("reload: cannot start"))
    assert any(m.startswith("fps cam0=") and " events " in m for m in messages[failed:])


def test_a_new_model_that_is_not_there_falls_back_to_the_loaded_one(tmp_path, caplog):  # type: ignore[no-untyped-def]
    first = _config(tmp_path, {"enabled": False})
    missing = first.model_copy(
        update={"detector": first.detector.model_copy(update={"model": str(tmp_path / "gone.tflite")})}
    )

    async def main():  # type: ignore[no-untyped-def]
        async def hup() -> None:
            await asyncio.sleep(1.0)
            os.kill(os.getpid(), signal.SIGHUP)

        sender = asyncio.create_task(hup())
        summary = await serve(first, load=lambda: missing, duration=3.0, status_interval=0.5)
        await sender
        return summary

    with caplog.at_level(logging.INFO, logger="edgeinfer"):
        summary = asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("reload:   detector.model: ") for m in messages), messages
    assert any(
        m.startswith("reload: cannot start on the new config: model file not found") for m in messages
    ), messages
    assert sum(m.startswith("running: ") for m in messages) == 2  # the first and the fallback
    failed = next(i for i, m in enumerate(messages) if m.startswith("reload: cannot start"))
    assert any(m.startswith("fps cam0=") for m in messages[failed:])  # the old detector still runs
    assert summary.frames > 0
