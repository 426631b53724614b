"""The host-side shims' C sources, shipped as package data (see venus_repro/shims.py)."""
