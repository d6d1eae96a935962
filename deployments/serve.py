"""Serve the monthly schedule on this machine: `python deployments/serve.py` (same as `seqcast serve`).

Needs a running Prefect server (`prefect server start`) and PREFECT_API_URL pointing at it.
"""

from seqcast.cli import app

if __name__ == "__main__":
    app(["serve"])
