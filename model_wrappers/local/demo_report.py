"""What the demo measures while it streams, and the learning-curve figure it writes.

Everything is measured from the client's side, from what the graph answered: the progressive
accuracy (each row is predicted before its label is sent back, as in
``river.evaluate.progressive_val_score``), which model the router chose (``meta.routing``) and
which rows the outlier detector flagged (its tags).

Examples
--------
>>> t = Tracker(["model-a", "model-b"])
>>> t.record(correct=True, arm=0, outlier=False)
>>> t.record(correct=False, arm=1, outlier=True)
>>> t.accuracy, t.shares(), t.outlier_rate
(0.5, [0.5, 0.5], 0.5)
>>> t.postfix()
'acc 0.500 | model-a 50% model-b 50% | outliers 50.0%'

"""

from __future__ import annotations

import json
from pathlib import Path

WINDOW = 100  # rows in the rolling share of traffic per model


class Tracker:
    """Running figures of a stream through the graph.

    Parameters
    ----------
    arms
        Names of the router's children, in routing order (empty without a router).
    labels
        Longer names for the figure's legend (e.g. which kind of model each arm is).
    outliers
        Whether the graph has an outlier detector (the figure then has a panel for it).

    """

    def __init__(self, arms: list[str], labels: dict | None = None, outliers: bool = True):
        self.arms = list(arms)
        self.labels = [(labels or {}).get(a, a) for a in self.arms]
        self.track_outliers = outliers
        self.rows = 0
        self.correct = 0
        self.outliers = 0
        self.routed = [0] * len(self.arms)
        self.arm_correct = [0] * len(self.arms)
        self.accuracy_curve: list[float] = []
        self.flags: list[bool] = []
        self.choices: list[int | None] = []

    def record(self, correct: bool, arm: int | None, outlier: bool) -> None:
        """One row: whether the graph's answer was right, which arm served it, whether flagged."""
        self.rows += 1
        self.correct += bool(correct)
        self.outliers += bool(outlier)
        if arm is not None and 0 <= arm < len(self.arms):
            self.routed[arm] += 1
            self.arm_correct[arm] += bool(correct)
        self.choices.append(arm)
        self.flags.append(bool(outlier))
        self.accuracy_curve.append(self.accuracy)

    @property
    def accuracy(self) -> float:
        return self.correct / self.rows if self.rows else 0.0

    @property
    def outlier_rate(self) -> float:
        return self.outliers / self.rows if self.rows else 0.0

    def shares(self) -> list[float]:
        """Share of all rows each arm served so far."""
        return [n / self.rows if self.rows else 0.0 for n in self.routed]

    def postfix(self) -> str:
        """One line for the progress bar."""
        parts = [f"acc {self.accuracy:.3f}"]
        if self.arms:
            parts.append(" ".join(f"{a} {s:.0%}" for a, s in zip(self.arms, self.shares())))
        if self.track_outliers:
            parts.append(f"outliers {self.outlier_rate:.1%}")
        return " | ".join(parts)

    def rolling_shares(self) -> list[list[float]]:
        """Per arm, its share of the last ``WINDOW`` rows at each row."""
        return [_rolling([c == arm for c in self.choices]) for arm in range(len(self.arms))]

    def rolling_outlier_rate(self) -> list[float]:
        """The share of flagged rows among the last ``WINDOW`` rows, at each row."""
        return _rolling(self.flags)

    def summary(self) -> dict:
        return {
            "rows": self.rows,
            "progressive_accuracy": round(self.accuracy, 4),
            "outlier_rate": round(self.outlier_rate, 4),
            "arms": [
                {"model": a, "rows": n, "share": round(n / self.rows, 4) if self.rows else 0.0,
                 "accuracy": round(c / n, 4) if n else None}
                for a, n, c in zip(self.arms, self.routed, self.arm_correct)
            ],
        }

    def write(self, folder: Path, title: str) -> tuple[Path, Path]:
        """Write ``learning-curve.png`` and ``summary.json`` into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        png, summary = folder / "learning-curve.png", folder / "summary.json"
        plot(self, png, title)
        summary.write_text(json.dumps(self.summary(), indent=2) + "\n")
        return png, summary


def _rolling(hits: list[bool]) -> list[float]:
    out, inside = [], 0
    for i, hit in enumerate(hits):
        inside += hit - (hits[i - WINDOW] if i >= WINDOW else 0)
        out.append(inside / min(i + 1, WINDOW))
    return out


def plot(tracker: Tracker, path: Path, title: str) -> None:
    """The learning curve, the router's traffic and the outlier rate, one panel each."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    x = range(1, tracker.rows + 1)
    panels = 1 + bool(tracker.arms) + tracker.track_outliers
    fig, axes = plt.subplots(panels, 1, figsize=(9, 2.6 * panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    ax = axes[0]
    ax.plot(x, tracker.accuracy_curve, color="tab:blue")
    ax.set_ylabel("progressive\naccuracy")
    ax.set_ylim(0.5, 1.0)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if tracker.arms:
        ax = axes[1]
        for label, curve in zip(tracker.labels, tracker.rolling_shares()):
            ax.plot(x, curve, label=label)
        ax.set_ylabel(f"router's share\n(last {WINDOW} rows)")
        ax.set_ylim(0, 1.05)
        ax.legend(loc="center right")
        ax.grid(alpha=0.3)
    if tracker.track_outliers:
        ax = axes[-1]
        rate = tracker.rolling_outlier_rate()
        ax.plot(x, rate, color="tab:red")
        ax.set_ylabel(f"outlier rate\n(last {WINDOW} rows)")
        ax.set_ylim(0, max(0.05, max(rate, default=0) * 1.2))
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("rows (each predicted, then its label sent back)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
