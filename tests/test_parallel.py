"""Scale: data parallel and populations over 8 CPU devices, and 2 processes with jax.distributed."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import REPO, assert_trees_close, read_npz, small_fashion_mnist

SEED_SCRIPT = REPO / "experiments" / "mnist_seed.py"


# --------------------------------------------------------------------------- many devices

# One subprocess with 8 simulated devices serves the tests of this section (a module-scoped fixture).
EIGHT_DEVICES = textwrap.dedent("""
    import json, sys, jax, numpy as np
    from jaxmlp import model, optim, parallel, population, train
    folder = sys.argv[1]
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

    # Populations: K = 8 and K = 12 (padded to 16) members against one device; the compiled epochs of K = 8 and 4.
    x, y = x[:300], y[:300]
    params = population.init_population(jax.random.split(jax.random.key(0), 12), (784, 8, 10))
    rates, keys = np.geomspace(1e-4, 1e-2, 12), jax.random.split(jax.random.key(1), 12)
    options = dict(optimizer_factory=optim.rmsprop, epochs=2, batch_size=50, validation_split=0.2)
    one, alone = population.fit_population(params, x, y, hyperparams={"learning_rate": rates}, keys=keys,
                                           devices=jax.devices()[:1], **options)
    for size in (8, 12):  # 12 members are padded to 16 with inert ones
        many, histories = population.fit_population(population.member(params, slice(size)), x, y, keys=keys[:size],
                                                     hyperparams={"learning_rate": rates[:size]},
                                                     checkpoint_dir=f"{folder}/{size}", **options)
        result[size] = {
            "one": jax.tree.map(lambda a: np.asarray(a)[:size].tolist(), one.params),
            "many": jax.tree.map(lambda a: np.asarray(a).tolist(), many.params),
            "val_accuracy": [[h.metrics["val_accuracy"] for h in hs] for hs in (alone[:size], histories)],
            "spread_over": [len(leaf.sharding.device_set) for leaf in jax.tree.leaves(many)],
            "replicated": [leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(many)],
            "saved": np.array_equal(np.load(f"{folder}/{size}/epoch-00002.npz")["params/0/w"], many.params[0]["w"])}
    for size in (8, 4):  # 4 members on 8 devices: a (4, 2) mesh, each member's batches split over 2 devices
        params = population.init_population(jax.random.split(jax.random.key(0), size), (784, 8, 10))
        optimizer, states = population.init_population_state(
            params, optim.rmsprop, {"learning_rate": [1e-3] * size}, jax.random.split(jax.random.key(1), size))
        mesh = parallel.population_mesh(size)
        xs, ys = parallel.replicate((x, y), mesh)
        epoch = population.population_epoch.lower(
            parallel.shard_members(states, mesh), parallel.shard_members(np.ones(size, bool), mesh), xs, ys, (xs, ys),
            optimizer=optimizer, batch_size=50, mesh=mesh)
        result[f"hlo{size}"] = {"text": epoch.compile().as_text(),
                                "rows": [[d.id for d in row] for row in mesh.devices]}
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> dict:
    """What EIGHT_DEVICES printed: one process with 8 simulated CPU devices."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-c", EIGHT_DEVICES, str(tmp_path_factory.mktemp("checkpoints"))]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_eight_devices_train_as_one_device_does(eight_devices):
    result = eight_devices
    assert result["devices"] == 8 and result["all_reduce"]  # XLA inserted the gradient all-reduce
    for case in ("128/8", "100/8", "128/3"):
        assert result[case]["max_difference"] < 1e-5, case
        assert result[case]["same_val_accuracy"], case
        assert result[case]["spread_over"] == int(case.split("/")[1]), case


IOTA_GROUPS = re.compile(r"replica_groups=mesh\[([^]]*)\](?:, device_ids=\(\[([\d,]+)\]T\(([\d,]+)\)\))? \{([^}]*)\}")
COLLECTIVE = re.compile(r"\b(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)(-start)?\(")


def collective_groups(hlo: str) -> list[list[int]]:
    """The device groups of every collective in a compiled HLO text (both of XLA's replica_groups notations)."""
    groups = []
    for line in filter(COLLECTIVE.search, hlo.splitlines()):
        mesh = re.search(
            r"replica_groups=mesh\[([^]]*)\](?:, device_ids=\(\[([\d,]+)\]T\(([\d,]+)\)\))? \{([^}]*)\}", line
        )
        listed = re.search(r"replica_groups=\{((?:\{[\d,]*\},?)*)\}", line)
        if mesh:  # iota: device ids laid out as a mesh; a group runs along the axes named in braces
            names = re.findall(r"'(\w+)'=", mesh[1])
            sizes = [int(size) for size in re.findall(r"=(\d+)", mesh[1])]
            ids = np.arange(np.prod(sizes))
            if mesh[2]:
                ids = ids.reshape([int(n) for n in mesh[2].split(",")]).transpose([int(n) for n in mesh[3].split(",")])
            along = [names.index(name) for name in re.findall(r"'(\w+)'", mesh[4])]
            across = [axis for axis in range(len(sizes)) if axis not in along]
            size = int(np.prod([sizes[axis] for axis in along]))
            groups += ids.reshape(sizes).transpose(across + along).reshape(-1, size).tolist()
        elif listed:
            groups += [[int(n) for n in group.split(",")] for group in re.findall(r"\{([\d,]+)\}", listed[1])]
        else:
            raise AssertionError(f"a collective whose devices this test cannot read: {line.strip()[:200]}")
    return groups


def test_a_population_is_spread_over_eight_devices_without_communication_between_members(eight_devices):
    result = eight_devices
    assert result["devices"] == 8
    for size in ("8", "12"):
        assert_trees_close(result[size]["many"], result[size]["one"], rtol=1e-5, atol=1e-6)  # each member as alone
        assert result[size]["val_accuracy"][0] == result[size]["val_accuracy"][1]
        assert set(result[size]["spread_over"]) == {8} and not any(result[size]["replicated"])  # split, not copied
        assert result[size]["saved"]  # the checkpoint holds the K members, without the padding
    assert collective_groups(result["hlo8"]["text"]) == []  # one member per device: nothing to communicate
    groups, rows = collective_groups(result["hlo4"]["text"]), result["hlo4"]["rows"]
    assert groups  # the batch all-reduce of each member's gradients ...
    assert all(any(set(group) <= set(row) for row in rows) for group in groups)  # ... within its own devices only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distributed_flags(port: int, process_id: int) -> list[str]:
    return ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(process_id)]


def two_processes_and_one(command, tmp_path):
    """Run `command` as 2 processes on 127.0.0.1 (--out process0 and process1), then as 1 (--out single).

    Returns the stdout of process 0, of process 1 and of the single process.
    """
    env = {**os.environ, "JAXMLP_COMPILE_CACHE": "off", "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    port = free_port()
    workers = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"process{i}"), *distributed_flags(port, i)],
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
        [*command, "--out", str(tmp_path / "single")], env=env, capture_output=True, text=True, timeout=300
    )
    assert single.returncode == 0, single.stderr
    assert not (tmp_path / "process1").exists()  # only process 0 writes
    return outputs[0][0], outputs[1][0], single.stdout


def test_distributed_two_processes_reach_the_parameters_of_one(tmp_path):
    data_dir = small_fashion_mnist(tmp_path / "data")
    options = ["--dataset", "fashion_mnist", "--data-dir", str(data_dir), "--epochs", "2", "--hidden", "16"]
    first, second, _ = two_processes_and_one(
        [sys.executable, str(SEED_SCRIPT), *options, "--batch-size", "50"], tmp_path
    )
    summary = json.loads((tmp_path / "process0" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    assert "Epoch 2/2" in first and "Epoch" not in second  # only process 0 prints
    two, one = read_npz(tmp_path / "process0" / "params.npz"), read_npz(tmp_path / "single" / "params.npz")
    assert_trees_close(two, one, rtol=1e-5, atol=1e-6)  # the same names, and each array within rounding


POPULATION_SCRIPT = textwrap.dedent("""
    import argparse, jax, numpy as np
    from jaxmlp import cli, optim, population
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    cli.add_distributed_flags(parser)
    args = parser.parse_args()
    cli.start_distributed(args)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (300, 784), dtype=np.uint8), rng.integers(0, 10, 300)
    states, histories = population.fit_population(
        population.init_population(jax.random.split(jax.random.key(0), 4), (784, 8, 10)), x, y,
        optimizer_factory=optim.rmsprop, hyperparams={"learning_rate": [1e-3, 3e-3, 1e-2, 1e30]},
        keys=jax.random.split(jax.random.key(1), 4), epochs=2, batch_size=50, validation_split=0.2,
        checkpoint_dir=f"{args.out}/checkpoints", verbose=True)
    print("devices", jax.device_count(), "members here", states.params[0]["w"].addressable_shards[0].data.shape[0])
""")


def test_a_population_spread_over_two_processes_ends_with_the_parameters_of_one(tmp_path):
    first, second, single = two_processes_and_one([sys.executable, "-c", POPULATION_SCRIPT], tmp_path)
    assert "devices 2 members here 2" in first and "devices 1 members here 4" in single  # 2 members per process
    assert "Epoch 2/2" in first and "Epoch" not in second  # only process 0 prints
    two, one = (read_npz(tmp_path / run / "checkpoints" / "epoch-00002.npz") for run in ("process0", "single"))
    records = [json.loads(str(saved.pop("__meta__")))["records"] for saved in (two, one)]
    assert two["params/0/w"].shape == (4, 784, 8)
    assert_trees_close(two, one, rtol=1e-5, atol=1e-6)  # process 0 saved every member, as one process does
    assert [record["loss"][3] for record in records[0]] == [None, None]  # the diverged member, across processes
    assert [record["loss"][3] for record in records[1]] == [None, None]


def test_distributed_flags_must_come_together(tmp_path):
    run = subprocess.run(
        [sys.executable, str(SEED_SCRIPT), "--coordinator", "127.0.0.1:1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("error: a multi-process run needs --coordinator, --num-processes and --process-id")
