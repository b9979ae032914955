"""Every ``python -m workloads <command>``, one module each, named after the command (``serve-dev``:
``serve_dev.py``); :mod:`workloads.cli` lists them."""
