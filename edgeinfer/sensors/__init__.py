"""Sensor input: MQTT sensor payloads to points, the latest values for events, trigger rules."""
