"""The daemon's assembly and lifecycle: build every component once, run them, shut down in order."""
