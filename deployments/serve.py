"""Serve the monthly schedule on this machine: `python deployments/serve.py [options]` = `seqcast serve [options]`.

Needs a running Prefect server (`prefect server start`) and PREFECT_API_URL pointing at it.
"""

import sys

from seqcast.cli import app

if __name__ == "__main__":
    app(["serve", *sys.argv[1:]])
