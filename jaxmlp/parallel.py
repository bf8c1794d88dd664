"""Many devices, one or several hosts: data parallelism with JAX's own sharding machinery.

When more than one device is visible, `fit` builds a one-axis mesh named "batch",
puts the parameters, the optimizer state and the training set on every device
(replicated: MNIST is 47 MB as uint8), and splits each batch's rows across the
devices with a sharding constraint. XLA then partitions the step and inserts the
all-reduce of the gradients. Every device sees the same global batches as a single
device would, so the result equals the one-device run up to the order of
floating-point sums. A batch whose size the device count does not divide is padded
with masked rows, never refused.

Several hosts: call `initialize` (or pass the flags of the experiment scripts) in
every process before anything else touches JAX; each process loads the data, feeds
it to its own devices (`jax.make_array_from_process_local_data`), and runs the same
program; only process 0 should write files (`is_main_process`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def data_mesh(devices=None) -> Mesh | None:
    """A one-axis mesh over `devices` (default: every device of every process), or None for one device."""
    devices = jax.devices() if devices is None else list(devices)
    if len(devices) == 1:
        return None
    return jax.make_mesh((len(devices),), (BATCH_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def rows_per_batch(batch_size: int, mesh: Mesh | None) -> int:
    """The batch padded to a multiple of the device count, so that every device gets as many rows."""
    devices = 1 if mesh is None else mesh.size
    return -(-batch_size // devices) * devices


def split_rows(batches: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Constrain a (num_batches, rows) array so that each batch's rows are spread across the devices."""
    if mesh is None:
        return batches
    return jax.lax.with_sharding_constraint(batches, NamedSharding(mesh, PartitionSpec(None, BATCH_AXIS)))


def replicate(tree, mesh: Mesh | None):
    """The pytree on every device of the mesh (or on the default device when mesh is None).

    Each process must pass the same values. PRNG keys travel as their raw data.
    """
    if mesh is None:
        return jax.device_put(tree)
    sharding = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(place(jax.random.key_data(leaf)), impl=impl)
        return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))

    return jax.tree.map(place, tree)


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run (`jax.distributed.initialize`); call before any other use of JAX."""
    jax.distributed.initialize(coordinator_address, num_processes=num_processes, process_id=process_id)


def is_main_process() -> bool:
    """True in process 0, the one that prints and writes files."""
    return jax.process_index() == 0
