"""edgeinfer: on-device inference runtime for edge boxes."""

__version__ = "0.1.0"
