"""Draw a digit in the browser and watch a trained network answer as you draw.

    python experiments/draw.py --params runs/mnist_seed/params.npz [--port 8000] [--host 127.0.0.1]

Serves a page with a drawing pad (jaxmlp/draw.html) and the endpoint it posts the
drawing to (`jaxmlp.draw`): each drawing goes through MNIST's preprocessing
(`digits.mnist_style`) and the network, and the page shows the predicted digit, the ten
class probabilities and the 28x28 image the network saw. --params is any 784-input,
10-class MLP's params.npz (mnist_seed.py, best_mlp.py and a sweep's best/ write one).

Prints one line, `serving the drawing pad at http://127.0.0.1:8000/ (Ctrl+C to stop)`, and
serves until Ctrl+C, which prints `stopped`. Only this computer can reach the page unless
--host names another address (0.0.0.0: every network interface).
"""

from __future__ import annotations

import argparse
import errno

import numpy as np

import jaxmlp
from jaxmlp import cli, draw


def port_number(text: str) -> int:
    value = cli.nonnegative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number, 0..65535 (0: any free port); got {value}")
    return value


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--params", required=True, help="the network: a params.npz of a 784-input, 10-class MLP")
    parser.add_argument("--port", type=port_number, default=8000, help="port to serve on (default 8000; 0: any free)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this computer only); another host, such as 0.0.0.0, "
        "exposes the network to others on the network",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.enable_compilation_cache()
    params = cli.load_classifier(args.params)  # bad params: one line, exit 2
    jaxmlp.predict(params, np.zeros((1, 28, 28), np.uint8))  # compile the forward pass before the first drawing
    try:
        server = draw.make_server(params, args.host, args.port)
    except OSError as err:
        reason = err.strerror or str(err)
        advice = "; choose another --port (0 picks a free one)" if err.errno == errno.EADDRINUSE else ""
        raise OSError(f"cannot serve on {args.host}:{args.port}: {reason}{advice}") from None
    host, port = server.server_address[:2]
    try:
        print(f"serving the drawing pad at http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    cli.run(main)
