"""The seed chapter's tensor lessons, run on MNIST: rank, shape, dtype, loops against vectorised code.

    python experiments/tensor_basics.py --out O [--data-dir D]

Prints what a learner should see: the rank, shape and dtype of the MNIST tensors and
of a batch; how vectors, time series and images are 2D, 3D and 4D tensors; relu,
addition and the dot product written with Python loops (as the chapter writes
naive_relu, naive_add and naive_dot) and checked equal to their jax.numpy forms,
with how much faster the vectorised forms are; broadcasting and reshaping on real
data. Writes timings.json.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import cli, data, files


def describe(name: str, tensor) -> str:
    return f"{name:<40} rank {np.ndim(tensor)}  shape {str(np.shape(tensor)):<19} dtype {tensor.dtype}"


def naive_relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), one element at a time. x: 2D."""
    x = x.copy()
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] = max(x[i, j], 0)
    return x


def naive_add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x + y, one element at a time. x, y: 2D, same shape."""
    x = x.copy()
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] += y[i, j]
    return x


def naive_dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The matrix product, as the chapter builds it: every entry a dot product of a row and a column."""
    z = np.zeros((x.shape[0], y.shape[1]), x.dtype)
    for i in range(x.shape[0]):
        for j in range(y.shape[1]):
            total = 0.0
            for k in range(x.shape[1]):
                total += x[i, k] * y[k, j]
            z[i, j] = total
    return z


def seconds(function, *args, repeats: int = 3) -> float:
    """Median wall time of function(*args), results ready (jax dispatches asynchronously)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def race(name: str, naive, vectorised, *args) -> dict:
    """Run both forms, check they agree, and time them."""
    expected = naive(*args)
    np.testing.assert_allclose(np.asarray(vectorised(*args)), expected, rtol=1e-5, atol=1e-5)
    slow, fast = seconds(naive, *args, repeats=1), seconds(vectorised, *args, repeats=5)
    print(f"{name:<52} equal; loops {slow * 1e3:9.2f} ms, jax.numpy {fast * 1e3:7.3f} ms: {slow / fast:,.0f}x faster")
    return {
        "naive_seconds": slow,
        "vectorised_seconds": fast,
        "speedup": slow / fast,
        "shapes": [a.shape for a in args],
    }


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/tensor_basics")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    (train_images, train_labels), (test_images, _) = data.load_dataset("mnist", args.data_dir)

    print("-- Tensors: the data of the seed")
    print(describe("train_images", train_images))
    print(describe("train_labels", train_labels))
    print(describe("test_images", test_images))
    batch = train_images[128:256]  # the second batch of 128: the sample axis always comes first
    print(describe("train_images[128:256]", batch))
    print(describe("one digit, train_images[4]", train_images[4]), f"(label {train_labels[4]})")
    print(describe("one pixel, train_images[4, 14, 14]", train_images[4, 14, 14]))

    print("\n-- The same pixels as 2D, 3D and 4D tensors")
    print(describe("vectors: (samples, features)", train_images.reshape(60000, 28 * 28)))
    print(describe("time series: (samples, steps, features)", train_images))  # each row of pixels a time step
    print(describe("images: (samples, h, w, channels)", train_images[..., np.newaxis]))

    print("\n-- Element-wise operations, broadcasting and the dot product: loops against jax.numpy")
    x = (batch.reshape(128, 784).astype(np.float32) / 255) - 0.5  # centred pixels: half of them negative
    weights = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32) / 28
    timings = {
        "relu": race("relu of a batch, (128, 784)", naive_relu, jax.jit(lambda a: jnp.maximum(a, 0)), x),
        "add": race("add two batches, (128, 784) + (128, 784)", naive_add, jax.jit(jnp.add), x, x[::-1].copy()),
        "dot": race("dot of a batch and weights, (128, 784) . (784, 10)", naive_dot, jax.jit(jnp.dot), x, weights),
    }

    print("\n-- Broadcasting on real data")
    mean_image = train_images.reshape(60000, 784).mean(axis=0)  # (784,)
    centred = x + 0.5 - mean_image[np.newaxis, :] / 255  # (128, 784) - (1, 784): the mean is repeated for each row
    print(
        f"batch {x.shape} minus mean image {mean_image.shape}, written [None, :] -> {mean_image[None, :].shape}: "
        f"result {centred.shape}, batch mean {centred.mean():+.4f} (the data mean is 0.1307)"
    )

    print("\n-- Reshaping")
    flat = train_images.reshape(60000, 28 * 28)
    print(
        f"{train_images.shape} -> reshape(60000, 784) -> {flat.shape}; the same 47,040,000 bytes, "
        f"nothing copied: {np.shares_memory(flat, train_images)}"
    )
    print(
        f"a (784,) row back to an image: {flat[4].reshape(28, 28).shape}; transposed weights: "
        f"{weights.shape} -> {weights.T.shape}"
    )

    files.write_json(Path(args.out) / "timings.json", {**timings, **cli.environment()})
    print(f"\nwrote {args.out}/timings.json")


if __name__ == "__main__":
    cli.run(main)
