"""``experiment.png``: accuracy over time steps, one line per value, one panel per head; the
steps where the stimulus is shown are shaded, and chance, 1 / the head's classes, is a dashed line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.files import replaced


def _spans(window: list[bool]) -> list[tuple[int, int]]:
    """``[(first, last), ...]`` of each run of shown steps."""
    spans: list[tuple[int, int]] = []
    for t, shown in enumerate(window):
        if shown and spans and spans[-1][1] == t - 1:
            spans[-1] = (spans[-1][0], t)
        elif shown:
            spans.append((t, t))
    return spans


def experiment_figure(rows: list[dict[str, Any]], parameter: str, windows: list[list[bool] | None] | None = None,
                      classes: dict[str, int] | None = None) -> Any:
    """The figure of ``experiment.png``: one panel per head, accuracy over time steps, one line
    per value; ``windows`` (one per value, in the order of first appearance in ``rows``) shades
    the stimulus steps (grey when every value shows it at the same steps, else in each value's
    colour); ``classes`` (``{head: n}``) draws chance at 1 / n."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    heads = sorted({r["head"] for r in rows})
    values = list(dict.fromkeys(r["value"] for r in rows))
    known = [w for w in windows or [] if w is not None and any(w)]
    shared = known[0] if known and len(known) == len(values) and all(w == known[0] for w in known) else None
    fig, axes = plt.subplots(1, len(heads), figsize=(6.5 * len(heads), 4), squeeze=False)
    for ax, head in zip(axes[0], heads):
        for i, value in enumerate(values):
            points = [(r["timestep"], r["accuracy"]) for r in rows if r["head"] == head and r["value"] == value]
            (line,) = ax.plot(*zip(*points), marker="o", markersize=3, label=f"{value}")
            window = windows[i] if windows and i < len(windows) else None
            if shared is None and window is not None:
                for j, (first, last) in enumerate(_spans(window)):
                    ax.axvspan(first - 0.5, last + 0.5, color=line.get_color(), alpha=0.08, linewidth=0,
                               label=f"{value}: stimulus shown" if j == 0 else None)
        if shared is not None:
            for j, (first, last) in enumerate(_spans(shared)):
                ax.axvspan(first - 0.5, last + 0.5, color="grey", alpha=0.18, linewidth=0,
                           label="stimulus shown" if j == 0 else None)
        n = (classes or {}).get(head)
        if n:
            ax.axhline(1 / n, linestyle="--", color="black", linewidth=1, label=f"chance (1/{n})")
        ax.set_title(head)
        ax.set_xlabel("time step")
        ax.set_ylabel(f"test accuracy ({head})")
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(title=parameter, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def plot(rows: list[dict[str, Any]], parameter: str, path: Path, windows: list[list[bool] | None] | None = None,
          classes: dict[str, int] | None = None) -> None:
    import matplotlib.pyplot as plt

    fig = experiment_figure(rows, parameter, windows, classes)
    with replaced(path) as partial:
        fig.savefig(partial, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
