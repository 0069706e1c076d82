"""Draws docs/images/schedules.png: stimulus on/off over time for each timing schedule.

    .venv/bin/python docs/make_schedule_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from plugins.stimulus_timing.schedules import Repeat, StimulusContrast, StimulusDuration, StimulusInterval  # noqa: E402

SCHEDULES = {
    "repeat {n_timesteps: 20}": Repeat(n_timesteps=20),
    "stimulus_duration {n_timesteps: 20, stimulus_duration: 8, intro_duration: 3}":
        StimulusDuration(n_timesteps=20, stimulus_duration=8, intro_duration=3),
    "stimulus_interval {n_timesteps: 20, stimulus_duration: 4, intro_duration: 2, interval_duration: 5}":
        StimulusInterval(n_timesteps=20, stimulus_duration=4, intro_duration=2, interval_duration=5),
    "stimulus_contrast {n_timesteps: 20, stimulus_duration: 8, intro_duration: 3, stimulus_contrast: 0.4}":
        StimulusContrast(n_timesteps=20, stimulus_duration=8, intro_duration=3, stimulus_contrast=0.4),
}


def main() -> None:
    fig, axes = plt.subplots(len(SCHEDULES), 1, figsize=(9, 1.6 * len(SCHEDULES)), sharex=True)
    for ax, (title, schedule) in zip(axes, SCHEDULES.items()):
        level = schedule.on().float() * schedule.contrast
        ax.bar(range(len(level)), level, width=1.0, align="edge", color="tab:blue", edgecolor="white")
        ax.set_ylim(0, 1.1)
        ax.set_yticks([0, 1], ["void", "full"])
        ax.set_title(title, fontsize=9, loc="left")
    axes[-1].set_xlabel("time step")
    fig.tight_layout()
    out = Path(__file__).parent / "images" / "schedules.png"
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
