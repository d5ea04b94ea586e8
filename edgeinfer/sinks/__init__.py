"""Sinks drain the local store to the far side: MQTT and InfluxDB."""
