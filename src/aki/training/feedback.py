"""What a run reports: ``metrics.jsonl`` (one JSON object per logged step), TensorBoard, wandb
(when installed and asked for) and a progress bar with loss, LR, tokens/s and ETA. Rank 0 only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class Feedback:
    """Fan a step's metrics out to every configured sink."""

    def __init__(self, output_dir: str | Path, total_steps: int, start_step: int = 0, *, enabled: bool = True,
                 progress: bool = True, tensorboard: bool = True, wandb: bool = False,
                 wandb_project: str = "aki", config: dict | None = None, desc: str = "train"):
        self.enabled = enabled
        self.out = Path(output_dir)
        self.bar = self.tb = self.wandb = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self.metrics = open(self.out / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, dynamic_ncols=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.out / "tensorboard"))
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                self.tb = None
        if wandb:
            try:
                import wandb as _wandb
            except ImportError:
                print("wandb: true but wandb is not installed; logging to metrics.jsonl and TensorBoard only")
            else:
                self.wandb = _wandb.init(project=wandb_project, dir=str(self.out), config=config or {},
                                         resume="allow")

    def advance(self, n: int = 1, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.metrics.write(json.dumps(record, sort_keys=True) + "\n")
        self.metrics.flush()
        step = int(record["step"])
        scalars = {k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)
                   and k != "step" and math.isfinite(float(v))}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"train/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"train/{k}": v for k, v in scalars.items()}, step=step)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        self.metrics.close()
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _fmt(v: Any) -> str:
    """A number for the progress bar: 4 significant digits (``loss=5.669``, ``lr=0.000165``),
    whole numbers from 1000 on (``tok_s=2968``), exponent notation only for tiny values."""
    if isinstance(v, float):
        if not math.isfinite(v) or v == 0:
            return str(v)
        if abs(v) >= 1000:
            return f"{v:.0f}"
        return f"{v:.3g}" if abs(v) < 1e-4 else f"{v:.4g}"
    return str(v)
