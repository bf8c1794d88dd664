"""Many devices, one or several hosts: meshes, placement, and gathering, with JAX's own sharding machinery.

One model (`fit`) on D devices: a one-axis mesh named "batch". Parameters, optimizer
state and the training set are on every device (replicated: MNIST is 47 MB as
uint8), and each batch's rows are split across the devices with a sharding
constraint; XLA partitions the step and inserts the all-reduce of the gradients.
Every device sees the same global batches as a single device would, so the result
equals the one-device run up to the order of floating-point sums. A batch whose
size the device count does not divide is padded with masked rows, never refused.

A population of K models (`fit_population`) on D devices: a two-axis mesh
("population", "batch"). Every leaf of the stacked state is split along its member
axis over "population", so each device holds K/D members and trains them with no
communication between members; the data are replicated. With fewer members than
devices, "population" takes the smallest divisor of D that is at least K and the
remaining factor becomes "batch": each member's batches are then split as above.
K is padded to a multiple of the "population" size with inert copies of the last
member, which are never reported.

Several hosts: call `initialize` (or pass the flags of the experiment scripts) in
every process before anything else touches JAX. Each process holds the same host
values (the same data, the same initial state) and feeds its own devices
(`place`); `to_host` gathers a result back from every process; only process 0
should write files (`is_main_process`).
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"
POPULATION_AXIS = "population"


def data_mesh(devices=None) -> Mesh | None:
    """A one-axis "batch" mesh over `devices` (default: every device of every process), or None for one device."""
    devices = jax.devices() if devices is None else list(devices)
    if len(devices) == 1:
        return None
    return jax.make_mesh((len(devices),), (BATCH_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def population_mesh(members: int, devices=None) -> Mesh | None:
    """A ("population", "batch") mesh over `devices` for `members` models, or None for one device.

    members >= devices: (D, 1), members spread over every device. Fewer members: the
    population axis is the smallest divisor of D that is >= members, the batch axis the rest.
    """
    devices = jax.devices() if devices is None else list(devices)
    count = len(devices)
    if count == 1:
        return None
    groups = count if members >= count else min(d for d in range(members, count + 1) if count % d == 0)
    return _groups_mesh(groups, devices)


def _groups_mesh(groups: int, devices) -> Mesh:
    """(groups, D / groups) devices as a ("population", "batch") mesh."""
    return jax.make_mesh(
        (groups, len(devices) // groups),
        (POPULATION_AXIS, BATCH_AXIS),
        axis_types=(AxisType.Auto,) * 2,
        devices=devices,
    )


def padded_members(members: int, mesh: Mesh | None) -> int:
    """The population size rounded up to a multiple of the mesh's population axis."""
    groups = 1 if mesh is None else mesh.shape[POPULATION_AXIS]
    return -(-members // groups) * groups


def drop_padding(tree, members: int, mesh: Mesh | None):
    """The first `members` of a padded population, still split over every device as far as the count allows.

    An array cannot be split unevenly, so the members come back on a (g, D / g) mesh,
    g = gcd(members, D): K = 12 on 8 devices as 4 groups of 3 members, each on 2 devices.
    """
    if mesh is None or padded_members(members, mesh) == members:
        return tree
    groups = math.gcd(members, mesh.size)
    target = NamedSharding(_groups_mesh(groups, list(mesh.devices.flat)), PartitionSpec(POPULATION_AXIS))
    return _first_members(members, target)(jax.device_put(tree, target))


@functools.cache
def _first_members(members: int, sharding: NamedSharding):
    """A compiled slice [:members] of every leaf, laid out as `sharding`: built once per (members, sharding)."""
    return jax.jit(lambda tree: jax.tree.map(lambda leaf: leaf[:members], tree), out_shardings=sharding)


def _batch_devices(mesh: Mesh | None) -> int:
    return 1 if mesh is None else mesh.shape[BATCH_AXIS]


def rows_per_batch(batch_size: int, mesh: Mesh | None) -> int:
    """The batch padded to a multiple of the batch axis, so that every device gets as many rows."""
    devices = _batch_devices(mesh)
    return -(-batch_size // devices) * devices


def split_rows(batches: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Constrain a (num_batches, rows) array so that each batch's rows are spread over the batch axis.

    Inside a population's vmap (spmd_axis_name="population") the member axis is added in front.
    """
    if _batch_devices(mesh) == 1:
        return batches
    return jax.lax.with_sharding_constraint(batches, NamedSharding(mesh, PartitionSpec(None, BATCH_AXIS)))


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


def place(tree, mesh: Mesh | None, spec: PartitionSpec):
    """The pytree on the mesh's devices, every leaf laid out as `spec` (PartitionSpec() replicates).

    Each process passes the same host values and feeds only its own devices
    (`jax.make_array_from_callback`); with mesh None, the tree goes to the default device.
    PRNG keys travel as their raw data.
    """
    if mesh is None:
        return jax.device_put(tree)
    sharding = NamedSharding(mesh, spec)

    def put(leaf):
        if _is_key(leaf):
            return jax.random.wrap_key_data(put(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def replicate(tree, mesh: Mesh | None):
    """The pytree, whole, on every device of the mesh (or on the default device when mesh is None)."""
    return place(tree, mesh, PartitionSpec())


def shard_members(tree, mesh: Mesh | None):
    """A stacked population, every leaf split along its leading (member) axis over the population axis."""
    return place(tree, mesh, PartitionSpec(POPULATION_AXIS))


def mesh_of(tree) -> Mesh | None:
    """The mesh a pytree's first leaf is laid out on, or None when it is not on a mesh."""
    sharding = getattr(jax.tree.leaves(tree)[0], "sharding", None)
    return sharding.mesh if isinstance(sharding, NamedSharding) else None


def to_host(tree):
    """The pytree as host values, each leaf whole even when its pieces live on other processes' devices.

    Call it in every process (it is a collective when an array spans processes). PRNG
    keys come back as keys on the default device.
    """

    def fetch(leaf):
        if _is_key(leaf):
            return jax.random.wrap_key_data(fetch(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        if isinstance(leaf, jax.Array) and not (leaf.is_fully_addressable or leaf.is_fully_replicated):
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree.map(fetch, tree)


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run (`jax.distributed.initialize`); call before any other use of JAX."""
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)


def is_main_process() -> bool:
    """True in process 0, the one that prints and writes files."""
    return jax.process_index() == 0
