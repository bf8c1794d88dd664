"""Classify your own pictures of digits with a trained network, after the preprocessing MNIST's digits went through.

    python experiments/predict.py --params runs/mnist_seed/params.npz seven.png photo.jpg [--json]

Each IMAGE (PNG, JPEG, BMP or anything Pillow reads; any size, colour or grey, dark
ink on a light page or light on dark) becomes a 28x28 MNIST-style digit with
`jaxmlp.digits.mnist_style`: grey, inverted when the digit is dark on light, cropped
to the ink, scaled to fit 20x20 keeping its aspect ratio (antialiased), and placed
so that its centre of mass is at the centre. Then the network classifies it. Prints
one line per image, the class and the three most probable classes:

    seven.png: 7 (7 0.982, 1 0.011, 9 0.004)

With --json, prints instead a JSON list of {"file", "class", "probabilities"} (ten numbers).

Exit status: 0 when every image was classified; 2 when the params file cannot be
used, or no image can; 1 when some images were classified and others could not be.
Each image that cannot be used is named on stderr with the reason, in one line.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import jaxmlp
from jaxmlp import cli, digits


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--params", required=True, help="a params.npz: an MLP with 784 inputs and 10 classes")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, each of one digit")
    parser.add_argument("--json", action="store_true", help='print a JSON list of {"file", "class", "probabilities"}')
    return parser.parse_args(argv)


def read_digits(paths) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """([(path, (28, 28) uint8 digit)] for the usable images, in order; ["<path>: <reason>"] for the others)."""
    usable, problems = [], []
    for path in paths:
        try:
            usable.append((path, digits.load_digit(path)))
        except FileNotFoundError:
            problems.append(f"{path}: no such file")
        except OSError as err:  # a folder, no permission
            problems.append(f"{path}: cannot be read ({err.strerror or err})")
        except ValueError as err:  # empty, not an image, one colour
            problems.append(str(err))
    return usable, problems


def line_of(row: dict) -> str:
    """ "<file>: <class> (<top three classes with their probabilities>)"."""
    top = np.argsort(-np.asarray(row["probabilities"]), kind="stable")[:3]  # ties: the lower class first
    ranked = ", ".join(f"{c} {row['probabilities'][c]:.3f}" for c in top)
    return f"{row['file']}: {row['class']} ({ranked})"


def main(argv=None) -> int:
    args = parse_args(argv)
    params = cli.load_classifier(args.params)  # a bad file: one line, exit 2
    usable, problems = read_digits(args.images)
    if usable:
        probabilities = jaxmlp.predict(params, np.stack([digit for _, digit in usable]))  # (M, 10)
        rows = [
            {"file": path, "class": int(p.argmax()), "probabilities": p.tolist()}
            for (path, _), p in zip(usable, probabilities)
        ]
        if args.json:  # one row per line
            print("[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]")
        else:
            print("\n".join(line_of(row) for row in rows))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not usable:
        return 2
    return 1 if problems else 0


if __name__ == "__main__":
    cli.run(main)
