"""The PowerScale SDK is imported at the first call to the cluster, not when the driver starts
(~1 s, 7.5 s on a loaded host: a managed plugin must answer Activate before that)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SCRIPT = """
import json, sys
from orlop.backends import make_backend
from orlop.backends.base import BackendContext
settings = {"url": "https://127.0.0.1:9", "username": "u", "password": "p"}
backend = make_backend("powerscale", BackendContext("ps", sys.argv[1], {}, settings))
started = "isilon_sdk" in sys.modules
try:
    backend.provider.api()  # the first use: builds the client
except Exception as error:
    print(error, file=sys.stderr)
print(json.dumps({"at_start": started, "after_use": "isilon_sdk" in sys.modules}))
"""


def test_the_sdk_is_imported_at_first_use_only(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"at_start": False, "after_use": True}
