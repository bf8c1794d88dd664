"""Scale: populations with vmap, data parallel over 8 CPU devices, and 2 processes with jax.distributed."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from conftest import REPO, small_fashion_mnist

from jaxmlp import model, optim, population, train

SEED_SCRIPT = REPO / "experiments" / "mnist_seed.py"


def random_data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n)


def leaf(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


# --------------------------------------------------------------------------- populations


def test_each_member_trains_as_fit_would_train_it_alone():
    x, y = random_data(600)
    keys = jax.random.split(jax.random.key(3), 3)
    params = population.init_population(jax.random.split(jax.random.key(0), 3), (784, 16, 10))
    rates = [3e-3, 1e-2, 3e-2]
    states, histories = population.fit_population(
        params,
        x,
        y,
        optimizer=optim.sgd,
        hyperparams={"learning_rate": rates, "momentum": [0.9, 0.5, 0.0]},
        keys=keys,
        epochs=2,
        batch_size=64,
        validation_split=0.2,
    )
    for i, (lr, momentum) in enumerate(zip(rates, [0.9, 0.5, 0.0])):
        optimizer = optim.sgd(lr, momentum=momentum)
        alone, history = train.fit(
            train.init_train_state(leaf(params, i), optimizer, keys[i]),
            x,
            y,
            optimizer=optimizer,
            epochs=2,
            batch_size=64,
            validation_split=0.2,
        )
        for a, b in zip(jax.tree.leaves(leaf(states.params, i)), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert histories[i].metrics["val_accuracy"] == pytest.approx(history.metrics["val_accuracy"], abs=1e-9)
        assert histories[i].metrics["loss"] == pytest.approx(history.metrics["loss"], rel=1e-5)
    tests = population.evaluate_population(states.params, x, y)
    assert [t["accuracy"] for t in tests] == [
        train.evaluate(leaf(states.params, i), x, y)["accuracy"] for i in range(3)
    ]


def test_a_grid_of_learning_rates_compiles_once(monkeypatch):
    traced = []
    apply = model.apply
    monkeypatch.setattr(model, "apply", lambda params, x, **kw: (traced.append(1), apply(params, x, **kw))[1])
    x, y = random_data(300)
    params = population.init_population(jax.random.split(jax.random.key(0), 4), (784, 8, 10))
    for rates in ([1e-3, 3e-3, 1e-2, 3e-2], [1e-4, 2e-4, 5e-4, 7e-4]):
        population.fit_population(
            params,
            x,
            y,
            optimizer=optim.rmsprop,
            hyperparams={"learning_rate": rates},
            epochs=2,
            batch_size=50,
            validation_split=0.2,
        )
    assert len(traced) == 2  # one epoch program and one validation program, for both grids


def test_population_rejects_mismatched_grids():
    x, y = random_data(100)
    params = population.init_population(jax.random.split(jax.random.key(0), 3), (784, 8, 10))
    with pytest.raises(ValueError, match="has 2 values for 3 members"):
        population.fit_population(params, x, y, optimizer=optim.adam, hyperparams={"learning_rate": [1e-3, 1e-2]})
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        population.fit_population(params, x, y, optimizer=optim.adam, hyperparams={"learning_rate": [1e-3, 0, 1]})
    with pytest.raises(ValueError, match="2 shuffling keys for 3 members"):
        population.fit_population(
            params,
            x,
            y,
            optimizer=optim.adam,
            hyperparams={"learning_rate": [1e-3] * 3},
            keys=jax.random.split(jax.random.key(0), 2),
        )


# --------------------------------------------------------------------------- many devices

EIGHT_DEVICES = textwrap.dedent("""
    import json, jax, numpy as np
    from jaxmlp import model, optim, parallel, train
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (700, 784), dtype=np.uint8), rng.integers(0, 10, 700)
    params = model.init_mlp(jax.random.key(0), (784, 32, 10))
    result = {"devices": jax.device_count()}
    for batch_size, devices in ((128, 8), (100, 8), (128, 3)):  # 100 and 128 do not divide by 8 and 3
        runs = [train.fit(params, x, y, epochs=2, batch_size=batch_size, validation_split=0.2, key=jax.random.key(5),
                          devices=jax.devices()[:n]) for n in (1, devices)]
        (one, h1), (many, h8) = runs
        result[f"{batch_size}/{devices}"] = {
            "max_difference": max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                                  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(many.params))),
            "same_val_accuracy": h1.metrics["val_accuracy"] == h8.metrics["val_accuracy"],
            "spread_over": len(many.params[0]["w"].sharding.device_set)}
    mesh = parallel.data_mesh()
    state = parallel.replicate(train.init_train_state(params, optim.rmsprop(), jax.random.key(1)), mesh)
    data = parallel.replicate((x, y), mesh)
    epoch = train.train_epoch.lower(state, *data, optimizer=optim.rmsprop(), batch_size=128, mesh=mesh)
    hlo = epoch.compile().as_text()
    result["all_reduce"] = "all-reduce" in hlo
    print(json.dumps(result))
""")


def test_eight_devices_train_as_one_device_does():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", EIGHT_DEVICES], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8 and result["all_reduce"]  # XLA inserted the gradient all-reduce
    for case in ("128/8", "100/8", "128/3"):
        assert result[case]["max_difference"] < 1e-5, case
        assert result[case]["same_val_accuracy"], case
        assert result[case]["spread_over"] == int(case.split("/")[1]), case


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_two_processes_reach_the_parameters_of_one(tmp_path):
    data_dir = small_fashion_mnist(tmp_path / "data")
    common = [
        sys.executable,
        str(SEED_SCRIPT),
        "--dataset",
        "fashion_mnist",
        "--data-dir",
        str(data_dir),
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--batch-size",
        "50",
    ]
    env = {**os.environ, "JAXMLP_COMPILE_CACHE": "off", "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    port = free_port()
    workers = [
        subprocess.Popen(
            common
            + [
                "--out",
                str(tmp_path / f"process{i}"),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    single = subprocess.run(
        common + ["--out", str(tmp_path / "single")], env=env, capture_output=True, text=True, timeout=300
    )
    assert single.returncode == 0, single.stderr

    summary = json.loads((tmp_path / "process0" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    assert not (tmp_path / "process1").exists()  # only process 0 writes
    assert "Epoch 2/2" in outputs[0][0] and "Epoch" not in outputs[1][0]  # and only process 0 prints
    with np.load(tmp_path / "process0" / "params.npz") as two, np.load(tmp_path / "single" / "params.npz") as one:
        assert sorted(two.files) == sorted(one.files)
        for name in one.files:
            np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-6)


def test_distributed_flags_must_come_together(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SEED_SCRIPT), "--coordinator", "127.0.0.1:1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: a multi-process run needs --coordinator, --num-processes and --process-id")


def test_a_schedule_multiplies_every_members_learning_rate():
    x, y = random_data(200)
    keys = jax.random.split(jax.random.key(3), 2)
    params = population.init_population(jax.random.split(jax.random.key(0), 2), (784, 8, 10))
    halving = lambda count: 0.5 ** (count // 3)  # noqa: E731 - a schedule is any function of the step count
    states, _ = population.fit_population(
        params,
        x,
        y,
        optimizer=optim.sgd,
        hyperparams={"learning_rate": [0.1, 0.4]},
        schedule=halving,
        keys=keys,
        epochs=2,
        batch_size=50,
    )
    for i, lr in enumerate([0.1, 0.4]):
        optimizer = optim.sgd(lambda count, lr=lr: lr * halving(count))
        alone, _ = train.fit(
            train.init_train_state(leaf(params, i), optimizer, keys[i]),
            x,
            y,
            optimizer=optimizer,
            epochs=2,
            batch_size=50,
        )
        for a, b in zip(jax.tree.leaves(leaf(states.params, i)), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        population.fit_population(
            params, x, y, optimizer=optim.sgd, hyperparams={"learning_rate": [0.1, -1.0]}, schedule=halving
        )
