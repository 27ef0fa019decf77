"""Compatibility with the earlier command-line profiler (real files in ``data/legacy``).

Its registry (``models_config.json``), experiment files (``settings/*.json``) and run
history (``raw_data.csv``) are imported here, and runs are exported back in its CSV
columns so its analysis scripts keep working.
"""
