"""Figures, drawn with matplotlib (imported only when a figure is drawn) and saved atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxmlp import metrics
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
        for i, (label, history) in enumerate(histories.items()):
            values = history[name]
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
    titles = [f"{guess} ({label})" for guess, label in zip(predicted, true)]
    colours = ["black" if guess == label else "red" for guess, label in zip(predicted, true)]
    return _digit_grid(images, titles, colours, len(images), "predicted (true)", path)


def plot_mistakes(images, mistakes: dict, path, columns: int = 5) -> Path:
    """The table `metrics.confident_mistakes` returns, as a grid of digits, most confident first.

    `images`: the (N, 28, 28) or (N, 784) images the mistakes index, white ink on black as
    MNIST stores them (drawn dark on light). Each digit is titled "<predicted> (<probability>),
    true <label>".
    """
    chosen = np.asarray(images)[mistakes["index"]]
    rows = zip(mistakes["predicted"], mistakes["probability"], mistakes["label"])
    titles = [f"{guess} ({p:.3f}), true {label}" for guess, p, label in rows]
    suptitle = "the most confident mistakes: predicted class (its probability), true class"
    return _digit_grid(chosen, titles, ["firebrick"] * len(titles), columns, suptitle, path)


def _digit_grid(images, titles, colours, columns: int, suptitle: str, path) -> Path:
    """Digits in rows of `columns`, dark on light, each with its title in its colour."""
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.25 * columns, 1.45 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title, colour in zip(axes.flat, images, titles, colours):
        ax.imshow(np.reshape(image, (28, 28)), cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(title, color=colour, fontsize=8)
    figure.suptitle(suptitle, fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def plot_weights(weights, path, units=None, title: str | None = None) -> Path:
    """The first layer's weights as 28x28 images, one per hidden unit, on one diverging scale centred at 0.

    `weights`: (784, H), the "w" of the first layer; `units`: the columns to draw, in
    order (default all). Red is a positive weight (ink there excites the unit), blue a
    negative one (ink there inhibits it), white 0. All tiles share one colour scale,
    symmetric about 0 and reaching the 99.5th percentile of |w| over the drawn units,
    so a pale tile is a unit with small weights; the few larger weights saturate. With
    up to 100 units each tile is labelled with its unit's index.
    """
    plt = _pyplot()
    weights = np.asarray(weights, dtype=np.float64)
    units = np.arange(weights.shape[1]) if units is None else np.asarray(units)
    columns = _grid_columns(len(units))
    rows = -(-len(units) // columns)
    tile, gap = 28, 2
    side = tile + gap
    mosaic = np.full((rows * side - gap, columns * side - gap), np.nan)  # NaN: the gaps, drawn as background
    for i, unit in enumerate(units):
        top, left = (i // columns) * side, (i % columns) * side
        mosaic[top : top + tile, left : left + tile] = weights[:, unit].reshape(tile, tile)
    limit = float(np.percentile(np.abs(weights[:, units]), 99.5)) or 1.0
    colours = plt.get_cmap("RdBu_r").with_extremes(bad="0.85")
    inches = min(11.0, 0.9 * columns)  # the mosaic's width
    figure, ax = plt.subplots(figsize=(inches + 1.4, inches * rows / columns + 0.5), layout="constrained")
    image = ax.imshow(mosaic, cmap=colours, vmin=-limit, vmax=limit, interpolation="nearest")
    if len(units) <= 100:
        for i, unit in enumerate(units):
            top, left = (i // columns) * side, (i % columns) * side
            ax.text(left + 1, top + 1, str(unit), fontsize=6, va="top", ha="left", color="0.25")
    ax.axis("off")
    ax.set_title(title or f"first-layer weights of {len(units)} hidden units", fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.6, extend="both", label="weight")
    return save_figure(figure, path)


def _grid_columns(count: int) -> int:
    """Columns for `count` tiles: a divisor of count between sqrt(count) and twice that, so no row is
    left part empty (64 -> 8 x 8, 512 -> 32 x 16), else ceil(sqrt(count))."""
    square = int(np.ceil(np.sqrt(count)))
    return next((columns for columns in range(square, 2 * square + 1) if count % columns == 0), square)


def plot_confusion(confusion, path) -> Path:
    """A (C, C) confusion matrix (row = true class, column = predicted) in two panels.

    Left: the counts, on a log colour scale so that single mistakes show beside
    the ~1000 correct ones of a class. Right: each row as a percentage of its true
    class, the errors only (the diagonal, each class's recall, is written in grey),
    coloured on their own scale so the most frequent confusions stand out.
    """
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    confusion = np.asarray(confusion)
    classes = len(confusion)
    percent = 100 * metrics.row_normalised(confusion)  # (C, C)
    errors = np.where(np.eye(classes, dtype=bool), np.nan, percent)  # (C, C), the diagonal left out
    largest_error = max(np.nanmax(errors), 1e-9)
    dark_count = np.sqrt(max(2, confusion.max()))  # the middle of the log colour scale
    figure, (counts, shares) = plt.subplots(1, 2, figsize=(12, 5.4), layout="constrained")
    shown = np.where(confusion > 0, confusion, np.nan)
    image = counts.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(2, confusion.max())))
    figure.colorbar(image, ax=counts, shrink=0.8, label="test images")
    error_colours = plt.get_cmap("Reds").with_extremes(bad="0.93")
    image = shares.imshow(errors, cmap=error_colours, vmin=0, vmax=largest_error)
    figure.colorbar(image, ax=shares, shrink=0.8, label="% of the true class")
    cell = {"ha": "center", "va": "center", "fontsize": 7}
    for i in range(classes):
        for j in range(classes):
            counts.text(j, i, str(confusion[i, j]), color="white" if confusion[i, j] > dark_count else "black", **cell)
            if i == j:
                shares.text(j, i, f"{percent[i, j]:.1f}", color="0.45", **cell)
            elif percent[i, j] >= 0.05:
                strong = percent[i, j] > 0.6 * largest_error
                shares.text(j, i, f"{percent[i, j]:.1f}", color="white" if strong else "black", **cell)
    for ax, title in ((counts, "counts"), (shares, "% of each true class; errors coloured, diagonal (recall) grey")):
        ax.set_xticks(range(classes))
        ax.set_yticks(range(classes))
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(title, fontsize=10)
    return save_figure(figure, path)


def plot_calibration(calibration: dict, path) -> Path:
    """A reliability diagram (Guo et al., 2017) from `metrics.calibration`'s numbers, with the ECE.

    Top: for each confidence bin, the accuracy of its samples (bar) against the
    diagonal a perfectly calibrated network would reach, and the bin's mean
    confidence (black line); the hatched red gap between the two lies above the
    bar where the network is over-confident, inside it where it is under-confident.
    The ECE is the gaps' mean weighted by the bins' counts. Bottom: how many
    samples fall in each bin, on a log scale; empty bins have no bar.
    """
    plt = _pyplot()
    edges = np.asarray(calibration["bins"])
    left, width = edges[:-1], np.diff(edges)
    filled = [i for i, n in enumerate(calibration["count"]) if n]
    accuracy = np.array([calibration["accuracy"][i] for i in filled])
    confidence = np.array([calibration["mean_confidence"][i] for i in filled])
    figure, (reliability, counts) = plt.subplots(
        2, 1, figsize=(5.5, 6.4), sharex=True, gridspec_kw={"height_ratios": (3, 1.2)}, layout="constrained"
    )
    reliability.plot([0, 1], [0, 1], "--", color="0.5", linewidth=1, label="perfectly calibrated")
    reliability.bar(
        left[filled],
        accuracy,
        width[filled],
        align="edge",
        color="steelblue",
        edgecolor="white",
        label="accuracy in the bin",
    )
    gap = {"color": "firebrick", "alpha": 0.35, "edgecolor": "firebrick", "hatch": "//", "align": "edge"}
    between = np.abs(confidence - accuracy)
    reliability.bar(left[filled], between, width[filled], bottom=np.minimum(accuracy, confidence), **gap, label="gap")
    reliability.hlines(
        confidence, left[filled], left[filled] + width[filled], color="black", linewidth=1.5, label="mean confidence"
    )
    reliability.set_xlim(0, 1)
    reliability.set_ylim(0, 1)
    reliability.set_ylabel("accuracy")
    reliability.set_title(f"reliability: expected calibration error {100 * calibration['ece']:.2f}%", fontsize=10)
    reliability.legend(loc="upper left", fontsize=8)
    reliability.grid(alpha=0.3)
    counts.bar(
        left[filled],
        np.asarray(calibration["count"])[filled],
        width[filled],
        align="edge",
        color="0.55",
        edgecolor="white",
    )
    counts.set_yscale("log")
    counts.set_xlabel("confidence (largest predicted probability)")
    counts.set_ylabel("test images")
    counts.grid(alpha=0.3)
    return save_figure(figure, path)
