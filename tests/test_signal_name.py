"""Why the ingestion package is `signals/`: a top-level `signal` shadows the stdlib."""

from __future__ import annotations

import subprocess
import sys


def test_a_signal_package_at_the_root_breaks_import_torch(tmp_path):
    (tmp_path / "signal").mkdir()
    (tmp_path / "signal" / "__init__.py").write_text("")
    (tmp_path / "probe.py").write_text("import torch\nprint('ok')\n")
    bad = subprocess.run([sys.executable, "-m", "probe"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "signal" in bad.stderr

    (tmp_path / "signal").rename(tmp_path / "signals")
    good = subprocess.run([sys.executable, "-m", "probe"], cwd=tmp_path, capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "ok"
