"""The training loop by hand: forward, loss, jax.grad, W = W - step * gradient, batch after batch.

    python experiments/training_loop.py --data-dir D --out O [--steps 500] [--lr 0.1]

No optimizer object, no fit: the seed's network trained with plain mini-batch SGD,
every step written out, the loss printed as it falls. Then the same steps are taken
with `jaxmlp.optim.sgd` and `optim.apply_updates` on the same batches, and the two
sets of parameters are checked equal. Writes loop.json (the losses) and loss.png.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import cli, data, files, model, optim, plot, train


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/training_loop")
    parser.add_argument("--steps", type=cli.positive_int, default=500)
    parser.add_argument("--lr", type=cli.positive_float, default=0.1, help="the step size of W = W - step * gradient")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    (train_images, train_labels), (test_images, test_labels) = data.load_dataset("mnist", args.data_dir)
    x = train_images.reshape(len(train_images), 784).astype(np.float32) / 255  # (60000, 784), in [0, 1]
    y = train_labels.astype(np.int32)  # (60000,)
    init_key, shuffle_key = jax.random.split(jax.random.key(args.seed))
    order = np.asarray(jax.random.permutation(shuffle_key, len(x)))  # one shuffle, then batches in turn

    def batch(step):
        rows = np.resize(order, (step + 1) * args.batch_size)[step * args.batch_size :]  # wraps after an epoch
        return jnp.asarray(x[rows]), jnp.asarray(y[rows])

    def loss_of(params, inputs, labels):
        logits = model.apply(params, inputs)  # forward pass: relu(x W1 + b1) W2 + b2, (B, 10)
        return jnp.mean(model.cross_entropy(logits, labels))  # how wrong, on average over the batch

    @jax.jit
    def sgd_step(params, inputs, labels):
        loss, gradient = jax.value_and_grad(loss_of)(params, inputs, labels)  # backward pass: d loss / d every W
        params = [
            {name: w - args.lr * gradient[i][name] for name, w in layer.items()} for i, layer in enumerate(params)
        ]
        return params, loss  # W = W - step * gradient, for every W and b

    params = model.init_mlp(init_key)
    losses = []
    for step in range(args.steps):
        params, loss = sgd_step(params, *batch(step))
        losses.append(float(loss))
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {losses[-1]:.4f}")
    test = train.evaluate(params, test_images, test_labels)
    print(f"after {args.steps} steps of plain SGD at {args.lr}: test_accuracy {test['accuracy']:.4f}")

    # The same batches through the library's optimizer: it must take the same steps.
    optimizer = optim.sgd(args.lr)
    library = model.init_mlp(init_key)
    state = optimizer.init(library)

    @jax.jit
    def library_step(params, state, inputs, labels):
        updates, state = optimizer.update(jax.grad(loss_of)(params, inputs, labels), state, params)
        return optim.apply_updates(params, updates), state

    for step in range(args.steps):
        library, state = library_step(library, state, *batch(step))
    difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(library)))
    np.testing.assert_allclose(
        np.concatenate([np.ravel(a) for a in jax.tree.leaves(params)]),
        np.concatenate([np.ravel(b) for b in jax.tree.leaves(library)]),
        rtol=1e-5,
        atol=1e-6,
    )
    print(f"jaxmlp.optim.sgd({args.lr}) on the same batches: the same parameters (largest difference {difference:.1e})")

    out = Path(args.out)
    files.write_json(
        out / "loop.json",
        {
            "losses": losses,
            "test_accuracy": test["accuracy"],
            "largest_difference_from_optim_sgd": difference,
            "config": vars(args),
        },
    )
    plot.plot_curves({"mini-batch SGD, by hand": losses}, "step", "training loss (batch)", out / "loss.png")
    print(f"wrote {out}/loop.json and {out}/loss.png")


if __name__ == "__main__":
    cli.run(main)
