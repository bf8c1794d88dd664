"""Figures, drawn with matplotlib (imported only when a figure is drawn) and saved atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmlp.files import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path) -> Path:
    """Save a matplotlib figure to `path` atomically (the format follows the suffix) and close it."""
    path = Path(path)
    try:
        return atomic_write(path, lambda f: figure.savefig(f, format=path.suffix[1:] or "png", dpi=120))
    finally:
        _pyplot().close(figure)


def plot_history(history, path) -> Path:
    """Loss and accuracy per epoch, training and validation, as R's `plot(model_fit)`.

    `history` is what `fit` returns, or its `metrics` dict
    ({"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}).
    """
    metrics = getattr(history, "metrics", history)
    plt = _pyplot()
    figure, axes = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    for ax, name in zip(axes, ("loss", "accuracy")):
        for prefix, label, style in (("", "training", "o-"), ("val_", "validation", "s-")):
            values = metrics.get(prefix + name)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=label)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_comparison(histories: dict, path) -> Path:
    """Validation loss and accuracy per epoch, one line per run: {"adam": metrics, "sgd": metrics, ...}.

    Up to 20 runs stay apart: ten colours, then the same ten dashed with other markers;
    the legend sits to the right of the panels, off the lines.
    """
    plt = _pyplot()
    colours = plt.get_cmap("tab10").colors
    markers = "osD^v<>pXh"
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for ax, name in zip(axes, ("val_loss", "val_accuracy")):
        for i, (label, metrics) in enumerate(histories.items()):
            values = metrics[name]
            style = {"color": colours[i % 10], "marker": markers[(i + i // 10 * 3) % 10], "ms": 4}
            ax.plot(range(1, len(values) + 1), values, "-" if i < 10 else "--", label=label, **style)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    return save_figure(figure, path)


def plot_curves(curves: dict, xlabel: str, ylabel: str, path, log_y: bool = False) -> Path:
    """One line per entry of {label: values}, against their index."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 4))
    for label, values in curves.items():
        ax.plot(range(len(values)), values, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return save_figure(figure, path)


def plot_paths(problems: dict, path) -> Path:
    """Optimizer trajectories over contour lines: {title: (f, (x0, x1, y0, y1), {label: (steps, 2) points})}."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(problems), figsize=(6 * len(problems), 5), squeeze=False)
    for ax, (title, (function, (x0, x1, y0, y1), runs)) in zip(axes[0], problems.items()):
        xs, ys = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        values = function(np.stack([xs, ys]))
        levels = np.logspace(np.log10(max(values.min(), 1e-3)), np.log10(values.max()), 20)
        ax.contour(xs, ys, values, levels=levels, colors="0.75", linewidths=0.6)
        for label, points in runs.items():
            (line,) = ax.plot(points[:, 0], points[:, 1], "-", lw=1.2, label=label)
            ax.plot(points[-1, 0], points[-1, 1], "o", color=line.get_color(), ms=4)
        ax.plot(*runs[next(iter(runs))][0], "k^", ms=7)  # the common start
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_title(title)
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_losses(problems: dict, path) -> Path:
    """Objective against step, log scale, one panel per problem: {title: {label: values}}."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(problems), figsize=(6 * len(problems), 4), squeeze=False)
    for ax, (title, runs) in zip(axes[0], problems.items()):
        for label, values in runs.items():
            ax.plot(np.maximum(values, 1e-12), label=label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("f")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_sweep(results: list[dict], rungs: list[int], path) -> Path:
    """A sweep in two panels, colour per optimizer family, validation error (1 - accuracy) on a log scale.

    Left: the validation error against epoch for every member; a member eliminated
    by successive halving ends at its rung (x), dotted lines mark the rungs.
    Right: each member's last validation error against its learning rate, filled if
    it trained every epoch, hollow if it was eliminated; the line joins the best
    finished member at each rate. Diverged members have no point; the legend counts them.
    `results` are results.json's rows, each with its "history".
    """
    plt = _pyplot()
    figure, (curves, rates) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    epochs = max(rungs)
    colours = {}
    for row in results:
        colour = colours.setdefault(row["optimizer"], f"C{len(colours)}")
        errors = [1 - v for v in row["history"].get("val_accuracy", [])]
        if errors:
            curves.plot(range(1, len(errors) + 1), errors, "-", color=colour, alpha=0.35, linewidth=1)
            if len(errors) < epochs and row["diverged_at_epoch"] is None:
                curves.plot(len(errors), errors[-1], "x", color=colour, alpha=0.6, markersize=4)
    for rung in rungs[:-1]:
        curves.axvline(rung, color="grey", linestyle=":", linewidth=1)
    for family, colour in colours.items():
        mine = [r for r in results if r["optimizer"] == family]
        alive = [r for r in mine if r["val_accuracy"] is not None]
        diverged = len(mine) - len(alive)
        label = family + (f" ({diverged} diverged)" if diverged else "")
        done = [r for r in alive if r["epochs_trained"] == epochs]
        early = [r for r in alive if r["epochs_trained"] < epochs]
        best = {}
        for r in done:
            best[r["learning_rate"]] = min(best.get(r["learning_rate"], 1.0), 1 - r["val_accuracy"])
        rates.plot(sorted(best), [best[lr] for lr in sorted(best)], "-", color=colour, label=label)
        rates.scatter([r["learning_rate"] for r in done], [1 - r["val_accuracy"] for r in done], color=colour, s=14)
        rates.scatter(
            [r["learning_rate"] for r in early],
            [1 - r["val_accuracy"] for r in early],
            facecolors="none",
            edgecolors=colour,
            s=14,
        )
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation error (1 - accuracy)")
    curves.set_title("every member; x: eliminated at a rung (dotted)", fontsize=10)
    rates.set_xscale("log")
    rates.set_xlabel("learning rate")
    rates.set_title("last value; filled: trained to the end, hollow: eliminated", fontsize=10)
    curves.set_yscale("log")
    percent = _pyplot().FuncFormatter(lambda value, _: f"{100 * value:g}%")
    curves.yaxis.set_major_locator(_pyplot().LogLocator(subs=(1, 2, 3, 5)))
    curves.yaxis.set_major_formatter(percent)
    curves.yaxis.set_minor_formatter(_pyplot().NullFormatter())
    for ax in (curves, rates):
        ax.grid(alpha=0.3)
    rates.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_predictions(images, predicted, true, path) -> Path:
    """A row of digits, each titled with its predicted and true class (red when wrong)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(images), figsize=(1.2 * len(images), 1.6), squeeze=False)
    for ax, image, guess, label in zip(axes[0], images, predicted, true):
        ax.imshow(image.reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{guess} ({label})", color="black" if guess == label else "red", fontsize=9)
        ax.axis("off")
    figure.suptitle("predicted (true)", fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)
