"""The `seqcast` command (and `python -m seqcast`).

A Ctrl-C while the command line loads (its imports take a second or two) ends like one later: one line on
stderr and exit status 130, no traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from seqcast.cli import app
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted while starting: nothing was done\n")
        raise SystemExit(130) from None
    app()


if __name__ == "__main__":
    main()
