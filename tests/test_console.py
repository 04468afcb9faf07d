"""What a user sees on the console while training: progress, the model summary and the
result, but no warning lines from third-party libraries (Lightning's "Precision bf16-mixed is
not supported by the model summary" came once per model in every bf16 run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

# the format of warnings.showwarning: "<file>.py:<line>: <Category>Warning: ..." or any
# "...Warning:" text
WARNING_LINE = re.compile(r"\.py:\d+: |Warning\b|warn\(")


def test_training_console_has_no_third_party_warnings(tiny_cube: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "no2fusion.cli", "train", "--config", "test"]
        + ["--cube", str(tiny_cube), "--output", str(tmp_path / "run")]
        + ["--set", "training.precision=bf16", "--set", "training.limit_train_batches=2"]
        + ["--set", "training.limit_val_batches=1"],  # with progress bars and model summary
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    printed = (done.stdout + done.stderr).replace("\r", "\n")
    assert done.returncode == 0, printed[-2000:]
    assert "Total params" in printed and "trained cross_modal for 2 epochs" in printed
    warnings = [line for line in printed.splitlines() if WARNING_LINE.search(line)]
    assert not warnings, "\n".join(warnings)
