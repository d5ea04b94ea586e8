"""The MQTT transport (paho-mqtt 2 wrapped for asyncio) and topic templates."""
