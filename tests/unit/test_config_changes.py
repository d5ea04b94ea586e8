"""What a SIGHUP reload logs as changed: the keys of the redacted config that differ, secrets never shown."""

from __future__ import annotations

from edgeinfer.app.reload import config_changes, keeps_status_topic
from edgeinfer.config import Config


def _config(**extra) -> Config:  # type: ignore[no-untyped-def]
    data = {
        "device": "box",
        "cameras": [{"name": "dock", "fps": 10, "source": {"type": "synthetic", "seed": 1}}],
        **extra,
    }
    return Config.model_validate(data)


def test_the_same_config_has_no_changes():
    assert config_changes(_config(), _config()) == []


def test_a_changed_value_shows_old_and_new():
    new = _config(cameras=[{"name": "dock", "fps": 5, "source": {"type": "synthetic", "seed": 1}}])
    assert config_changes(_config(), new) == ["cameras[0].fps: 10.0 -> 5.0"]


def test_an_added_camera_and_section():
    cameras = [
        {"name": "dock", "fps": 10, "source": {"type": "synthetic", "seed": 1}},
        {"name": "yard", "source": {"type": "synthetic", "seed": 2}},
    ]
    new = _config(cameras=cameras, mqtt={"host": "broker.local"})
    assert config_changes(_config(), new) == ["cameras[1]: added", "mqtt: added"]
    assert config_changes(new, _config()) == ["cameras[1]: removed", "mqtt: removed"]


def test_a_new_password_is_a_change_but_never_shown():
    old = _config(mqtt={"host": "b", "username": "u", "password": "old-s3cret-1"})
    new = _config(mqtt={"host": "b", "username": "u", "password": "new-s3cret-2"})
    changes = config_changes(old, new)
    assert changes == ["mqtt.password: changed"]
    assert "s3cret" not in " ".join(changes)


def test_the_status_topic_is_kept_only_on_the_same_broker_and_device():
    mqtt = {"host": "b", "port": 1883}
    assert keeps_status_topic(_config(mqtt=mqtt), _config(mqtt={**mqtt, "qos": 0}))
    assert not keeps_status_topic(_config(mqtt=mqtt), _config(mqtt={**mqtt, "host": "c"}))
    assert not keeps_status_topic(_config(mqtt=mqtt), _config(mqtt=mqtt, device="other"))
    assert not keeps_status_topic(_config(mqtt=mqtt), _config())
