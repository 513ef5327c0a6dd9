"""One run trained by several processes at once: the hosts of a multi-host TPU slice (docs/design-space.md
§9, data parallelism), or several processes of one machine in tests.

Every process of the gang joins JAX's distributed runtime (:func:`join`) before JAX touches a device;
from then on ``jax.devices()`` lists the devices of every host and one jitted program runs over all of
them. The training loop places the train state replicated on a one-axis ``data`` mesh over every
device and each process feeds only its own rows of every batch, so each step's gradients are averaged
over the whole global batch by XLA's collectives: the run computes what one process with the whole
batch would (up to floating-point summation order).

Process 0 is the run's voice: it alone holds the lease, writes the metrics, the log, the checkpoint
events and the registry records. Every process takes part in each checkpoint save (Orbax writes the
replicated arrays once, from process 0), so the work directory must be on storage every host sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Gang(BaseModel):
    """Where this process stands in a run's gang (what ``jax.distributed.initialize`` needs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``host:port`` of process 0's coordination service; None: JAX finds it (TPU VMs of one slice)
    coordinator: str | None
    processes: int = Field(ge=2)
    index: int = Field(ge=0)

    @model_validator(mode="after")
    def _index_in_range(self) -> Gang:
        if self.index >= self.processes:
            raise ValueError(f"process index {self.index} is not below the process count {self.processes}")
        return self


def join(gang: Gang) -> None:
    """Join the run's distributed JAX runtime (blocks until every process has joined)."""
    import jax

    jax.distributed.initialize(
        coordinator_address=gang.coordinator, num_processes=gang.processes, process_id=gang.index
    )


@dataclass(frozen=True)
class DataParallel:
    """The placement of one run over every process's devices: state replicated, batch split by rows."""

    mesh: Any
    replicated: Any  # NamedSharding: a whole copy on every device
    rows: Any  # NamedSharding: the leading (batch) axis split over every device
    index: int  # this process
    count: int  # processes

    @property
    def primary(self) -> bool:
        return self.index == 0

    @property
    def devices(self) -> int:
        return int(self.mesh.size)

    def local_rows(self, batch_size: int) -> slice:
        """The rows of a global batch this process feeds (processes hold equally many devices)."""
        per = batch_size // self.count
        return slice(self.index * per, (self.index + 1) * per)

    def batch(self, host: dict[str, Any]) -> dict[str, Any]:
        """This process's rows of a batch (arrays, or tuples of them with several text encoders) ->
        global arrays split over every device."""
        import jax

        return jax.tree_util.tree_map(lambda v: jax.make_array_from_process_local_data(self.rows, v), host)

    def place(self, tree: Any) -> Any:
        """A pytree every process holds identically -> global arrays replicated on every device."""
        import jax

        def put(x: Any) -> Any:
            a = np.asarray(x)
            return jax.make_array_from_callback(a.shape, self.replicated, lambda index: a[index])

        return jax.tree_util.tree_map(put, tree)

    def agree(self, verdict: bool) -> bool:
        """Process 0's verdict, in every process (a collective: every process calls it)."""
        from jax.experimental import multihost_utils

        return bool(multihost_utils.broadcast_one_to_all(np.asarray(verdict)))

    def abstract(self, tree: Any) -> Any:
        """Shapes and dtypes of a state -> the same, placed replicated (what a restore fills in)."""
        import jax

        return jax.tree_util.tree_map(
            lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated), tree
        )


def data_parallel() -> DataParallel | None:
    """The data-parallel placement over every process, or None when this process trains alone."""
    import jax

    if jax.process_count() == 1:
        return None
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()), ("data",))
    return DataParallel(
        mesh=mesh,
        replicated=NamedSharding(mesh, PartitionSpec()),
        rows=NamedSharding(mesh, PartitionSpec("data")),
        index=jax.process_index(),
        count=jax.process_count(),
    )


def host_copy(tree: Any) -> Any:
    """A host (numpy) copy of a pytree of arrays; a replicated global array is read from this
    process's own copy (it cannot be gathered whole from here, and need not be)."""
    import jax

    def get(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))

    return jax.tree_util.tree_map(get, tree)
