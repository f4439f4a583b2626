"""What the demo measures while it streams, and the learning-curve figure it writes.

Everything is measured from the client's side, from what the graph answered: the progressive
accuracy (each row is predicted before its label is sent back, as in
``river.evaluate.progressive_val_score``), which model the router chose (``meta.routing``), how
often each model was right on the rows it served, and which rows the outlier detector flagged
(its tags). The figure sets beside them each model's accuracy had it served every row alone.

Examples
--------
>>> t = Tracker(["model-a", "model-b"])
>>> t.record(correct=True, arm=0, outlier=False)
>>> t.record(correct=False, arm=1, outlier=True)
>>> t.accuracy, t.shares(), t.outlier_rate
(0.5, [0.5, 0.5], 0.5)
>>> t.postfix()
'acc 0.500 | model-a 50% model-b 50% | outliers 50.0%'
>>> t.rolling_accuracy()
[[1.0, 1.0], [None, 0.0]]

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
    warm_up
        Rows the outlier detector takes before it flags any (marked on the figure).

    """

    def __init__(self, arms: list[str], labels: dict | None = None, outliers: bool = True, warm_up: int = 0):
        self.arms = list(arms)
        self.labels = [(labels or {}).get(a, a) for a in self.arms]
        self.track_outliers = outliers
        self.warm_up = warm_up if outliers else 0
        self.rows = 0
        self.correct = 0
        self.outliers = 0
        self.routed = [0] * len(self.arms)
        self.arm_correct = [0] * len(self.arms)
        self.accuracy_curve: list[float] = []
        self.flags: list[bool] = []
        self.choices: list[int | None] = []
        self.hits: list[bool] = []

    def record(self, correct: bool, arm: int | None, outlier: bool) -> None:
        """One row: whether the graph's answer was right, which arm served it, whether flagged."""
        self.rows += 1
        self.correct += bool(correct)
        self.outliers += bool(outlier)
        if arm is not None and 0 <= arm < len(self.arms):
            self.routed[arm] += 1
            self.arm_correct[arm] += bool(correct)
        self.choices.append(arm)
        self.hits.append(bool(correct))
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

    def rolling_accuracy(self) -> list[list[float | None]]:
        """Per arm, at each row, its accuracy on the last ``WINDOW`` rows it served (None before its first)."""
        out = []
        for arm in range(len(self.arms)):
            served = [hit for hit, c in zip(self.hits, self.choices) if c == arm]
            rolling = iter(_rolling(served))
            curve, last = [], None
            for c in self.choices:
                if c == arm:
                    last = next(rolling)
                curve.append(last)
            out.append(curve)
        return out

    def rolling_outlier_rate(self) -> list[float]:
        """The share of flagged rows among the last ``WINDOW`` rows, at each row."""
        return _rolling(self.flags)

    def summary(self) -> dict:
        """The stream's figures: overall, and per arm its rows, share and accuracy on the rows it served."""
        return {
            "rows": self.rows,
            "progressive_accuracy": round(self.accuracy, 4),
            "outlier_rate": round(self.outlier_rate, 4),
            "detector_warm_up_rows": self.warm_up,
            "arms": [
                {"model": a, "label": label, "rows": n, "share": round(n / self.rows, 4) if self.rows else 0.0,
                 "accuracy": round(c / n, 4) if n else None}
                for a, label, n, c in zip(self.arms, self.labels, self.routed, self.arm_correct)
            ],
        }

    def write(self, folder: Path, title: str, baselines: dict[str, list[float]] | None = None,
              extra: dict | None = None) -> tuple[Path, Path]:
        """Write ``learning-curve.png`` and ``summary.json`` into ``folder``.

        ``baselines`` are progressive-accuracy curves of each arm's model serving every row alone;
        ``extra`` goes into the summary beside the stream's figures (configuration, router statistics).
        """
        folder.mkdir(parents=True, exist_ok=True)
        png, summary = folder / "learning-curve.png", folder / "summary.json"
        baselines = baselines or {}
        plot(self, png, title, baselines)
        alone = {a: round(curve[-1], 4) for a, curve in baselines.items() if curve}
        body = {**(extra or {}), "stream": self.summary(), "accuracy_alone": alone}
        summary.write_text(json.dumps(body, indent=2) + "\n")
        return png, summary


def _rolling(hits: list[bool]) -> list[float]:
    out, inside = [], 0
    for i, hit in enumerate(hits):
        inside += hit - (hits[i - WINDOW] if i >= WINDOW else 0)
        out.append(inside / min(i + 1, WINDOW))
    return out


def plot(tracker: Tracker, path: Path, title: str, baselines: dict[str, list[float]] | None = None) -> None:
    """Accuracy (the graph's, each model's on its rows, each model alone), the router's traffic and
    the outlier rate, one panel each; the detector's warm-up is shaded."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    x = list(range(1, tracker.rows + 1))
    panels = 1 + bool(tracker.arms) + tracker.track_outliers
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3.0 * panels), sharex=True, squeeze=False)
    axes = axes[:, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
    ax = axes[0]
    ax.plot(x, tracker.accuracy_curve, color="black", label="graph (progressive)")
    for i, (arm, label, curve) in enumerate(zip(tracker.arms, tracker.labels, tracker.rolling_accuracy())):
        color = colors[i % len(colors)]
        ax.plot(x, [float("nan") if v is None else v for v in curve], color=color, alpha=0.8,
                label=f"{label}, its rows (last {WINDOW})")
        alone = (baselines or {}).get(arm)
        if alone:
            ax.plot(x[:len(alone)], alone[:len(x)], color=color, linestyle="--", label=f"{label} alone")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.legend(loc="lower center", ncol=2, fontsize="small")
    ax.set_title(title)
    if tracker.arms:
        ax = axes[1]
        for i, (label, curve) in enumerate(zip(tracker.labels, tracker.rolling_shares())):
            ax.plot(x, curve, label=label, color=colors[i % len(colors)])
        ax.set_ylabel(f"router's share\n(last {WINDOW} rows)")
        ax.set_ylim(0, 1.05)
        ax.legend(loc="center right", fontsize="small")
    if tracker.track_outliers:
        ax = axes[-1]
        rate = tracker.rolling_outlier_rate()
        ax.plot(x, rate, color="tab:red")
        ax.set_ylabel(f"outlier rate\n(last {WINDOW} rows)")
        ax.set_ylim(0, max(0.05, max(rate, default=0) * 1.2))
    for ax in axes:
        ax.grid(alpha=0.3)
        if tracker.warm_up:
            ax.axvspan(0, min(tracker.warm_up, max(tracker.rows, 1)), color="grey", alpha=0.12, lw=0)
    if tracker.warm_up:
        axes[-1].text(min(tracker.warm_up, tracker.rows) / 2, axes[-1].get_ylim()[1] * 0.9,
                      f"detector warm-up ({tracker.warm_up} rows)", ha="center", va="top", fontsize="small")
    axes[-1].set_xlabel("rows (each predicted, then its label sent back)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
