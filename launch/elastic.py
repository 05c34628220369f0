"""PyTorch's elastic agent (the code behind torchrun) with the suite's rendezvous settings, for
training runs and the all-reduce bench alike: :func:`elastic_run`, where the workers meet:
:class:`Rendezvous`."""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
from collections.abc import Sequence

from ttabench.launch.procs import Interrupted

RDZV_MIN_TIMEOUT_S = 60  # c10d rendezvous: at least this, or the collective timeout if longer


@dataclasses.dataclass(frozen=True)
class Rendezvous:
    """Where a run's workers meet: on this node alone (the default), or at `endpoint` (HOST:PORT)
    with those of all `nnodes` nodes, this one being `node_rank` and reached at `local_addr`."""

    nnodes: int = 1
    node_rank: int = 0
    endpoint: str | None = None
    local_addr: str | None = None

    def c10d(self, timeout_s: float) -> tuple[str, dict, str]:
        """torch's rdzv_endpoint, rdzv_configs and run_id for it; every node names the same run."""
        configs = {"is_host": self.nnodes == 1 or self.node_rank == 0}
        configs["timeout"] = int(max(RDZV_MIN_TIMEOUT_S, timeout_s))
        if self.nnodes == 1:
            return "127.0.0.1:0", configs, uuid.uuid4().hex
        return self.endpoint, configs, "ttabench-" + self.endpoint.replace(":", "-")


def elastic_run(
    args: Sequence[str],
    *,
    nproc_per_node: int,
    collective_timeout: float,
    rendezvous: Rendezvous = Rendezvous(),
):
    """`python ARGS` in `nproc_per_node` workers under PyTorch's elastic agent, one c10d
    `rendezvous` (by default on this node alone).

    Returns None when every worker succeeded, else torch's ChildFailedError (which
    ranks failed how); raises Interrupted when Ctrl-C or SIGTERM stopped the agent
    (it stops the workers: SIGTERM, then SIGKILL after its grace period).
    """
    # Imported here: torch takes seconds to import, and `ttabench` starts without it.
    from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    endpoint, rdzv_configs, run_id = rendezvous.c10d(collective_timeout)
    lc = LaunchConfig(
        min_nodes=rendezvous.nnodes,
        max_nodes=rendezvous.nnodes,
        nproc_per_node=nproc_per_node,
        run_id=run_id,
        rdzv_backend="c10d",
        rdzv_endpoint=endpoint,
        rdzv_configs=rdzv_configs,
        # Restarts are the launcher's (launcher.launch): torch 2.13's in-place
        # restart cannot re-form a gloo group after a worker was SIGKILLed
        # in a collective (reproduced with plain torchrun).
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",
        local_addr=rendezvous.local_addr,
        logs_specs=DefaultLogsSpecs(),
    )
    # torchrun's default of one OpenMP thread per worker: workers set their
    # threads themselves (ttabench run --threads) and record them.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        elastic_launch(lc, entrypoint=sys.executable)(*args)
        return None
    except ChildFailedError as e:
        return e
    except SignalException as e:
        raise Interrupted(e.sigval.name) from None
    except KeyboardInterrupt:
        raise Interrupted("SIGINT") from None
