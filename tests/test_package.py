from __future__ import annotations

import subprocess
import sys

import seqcast


def test_every_public_name_resolves() -> None:
    for name in seqcast.__all__:
        assert getattr(seqcast, name) is not None


def test_importing_the_package_does_not_load_torch() -> None:
    code = "import sys, seqcast, seqcast.ingest, seqcast.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
