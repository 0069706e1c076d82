"""Host synchronisations per training step over whole ``core-train`` runs (no GPU needed).

Runs the real CLI (``core.cli.train.main``) in-process under
``core.testing.count_training_syncs`` and prints, per run, the training steps, the host
synchronisations counted in them by kind, and their number per step. Each run is made
twice: at the config's own ``trainer.log_every_n_steps`` and at Lightning's default (50),
the interval the issue's target (at most 0.1 per step) is stated at. Runs:

  quickstart+aug    configs/quickstart.yaml with transforms pixelnorm, random_flip,
                    random_translate (pixels 2)
  stimulus_duration configs/stimulus_duration.yaml
  sessions_multi    configs/sessions_multi.yaml on 4 synthetic sessions written first by
                    ``core-data make-sessions`` into a temporary folder

Each run trains ``--epochs`` epochs (default 2) into a temporary output folder. From the
repository root:

    .venv/bin/python benchmarks/host_syncs.py [--epochs 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.cli.train import main as core_train  # noqa: E402
from core.testing import count_training_syncs  # noqa: E402

AUGMENTED = "data.transforms=[pixelnorm, random_flip, {random_translate: {pixels: 2}}]"


def runs(sessions: Path) -> dict[str, tuple[str, list[str]]]:
    datasets = ", ".join(f"{{name: session_0{i}, format: {{hdf5: {{paths: {sessions}/session_0{i}.h5}}}}}}"
                         for i in range(4))
    return {
        "quickstart+aug": ("configs/quickstart.yaml", [AUGMENTED]),
        "stimulus_duration": ("configs/stimulus_duration.yaml", []),
        "sessions_multi": ("configs/sessions_multi.yaml", [f"datasets=[{datasets}]"]),
    }


def count(config: str, overrides: list[str]) -> dict:
    with count_training_syncs() as syncs, contextlib.redirect_stdout(io.StringIO()):
        code = core_train(["--config", str(ROOT / config), "--overwrite", *sum((["--set", o] for o in overrides), [])])
    if code != 0:
        raise SystemExit(f"core-train {config} exited {code}")
    return {"steps": syncs.steps, "syncs": syncs.total, "per_step": round(syncs.per_step, 4), "kinds": dict(syncs.counts)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = Path(tmp) / "sessions"
        subprocess.run([sys.executable, "-m", "core.cli.data", "make-sessions", str(sessions), "--option", "sessions=4",
                        "--option", "trials=1000"], check=True, cwd=ROOT, capture_output=True)
        print(f"{'run':<18} {'log every':>9} {'steps':>6} {'syncs':>6} {'per step':>9}  kinds")
        for name, (config, overrides) in runs(sessions).items():
            for interval in ("config", 50):
                extra = [f"output_dir={tmp}/runs", f"trainer.max_epochs={args.epochs}", *overrides]
                if interval != "config":
                    extra.append(f"trainer.log_every_n_steps={interval}")
                row = count(config, extra)
                results[f"{name} @ {interval}"] = row
                print(f"{name:<18} {interval:>9} {row['steps']:>6} {row['syncs']:>6} {row['per_step']:>9.3f}  {row['kinds']}")
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
