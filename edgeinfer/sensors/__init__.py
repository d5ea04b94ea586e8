"""Sensor input: MQTT sensor payloads to points (parse, input), the latest values for events (context),
trigger rules (triggers)."""
