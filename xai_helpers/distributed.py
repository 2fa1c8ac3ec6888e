"""The study's batches as Ray tasks: one model per worker, photos in deterministic shards.

Ray (Moritz et al., "Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018) runs one actor
per worker CPU; each actor loads the model once (``load``) and analyses whole batches (shards) of photos
with the function it is handed (``analyse(model, shard) -> rows``), so this module knows nothing of the
study. The shards are exactly the serial runner's batches, in the same order and of the same size, so every
row is computed by the same code on the same inputs as in a serial run (the study's randomness is seeded per
photo, never per batch). Results come back as shards finish; the runner writes them to the table as they
arrive, so an interrupted distributed run resumes like a serial one.

Without an address a local cluster sized to the machine is started (and stopped afterwards); with one,
``ray.init(address=...)`` joins an existing cluster, e.g. ``"auto"`` on a cluster node or
``"ray://head:10001"`` from outside. Workers need the package and the Keras cache (``KERAS_HOME``, passed
to them through Ray's runtime environment).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence

Shard = list
#: ``analyse(model, shard) -> rows``: what a worker does with a shard (picklable: a module-level function
#: or a ``functools.partial`` of one).
Analyse = Callable[[object, Shard], list[dict]]


def _runtime_env() -> dict:
    """Environment variables the workers must share with the driver (cache folder, quiet TensorFlow)."""
    names = ("KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")
    return {"env_vars": {name: os.environ[name] for name in names if name in os.environ}}


def ray_shards(shards: Sequence[Shard], analyse: Analyse, load: Callable[[], object],
               address: str | None = None, workers: int | None = None
               ) -> Iterator[tuple[Shard, list[dict], float]]:
    """Yield ``(shard, rows, seconds)`` for each shard as Ray workers finish it (completion order).

    ``rows`` are ``analyse(model, shard)`` computed on a worker that loaded ``model = load()`` once;
    ``seconds`` is the worker's wall time for the shard. ``address=None`` starts a local cluster with
    ``workers`` CPUs (default: all of this machine's) and shuts it down at the end; otherwise it connects
    to the cluster at ``address`` and uses ``workers`` actors (default: the cluster's CPUs).
    """
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("The distributed study needs Ray: pip install 'ray>=2.9'.") from None
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}.")
    started_here = not ray.is_initialized()
    if started_here:
        if address is None:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     runtime_env=_runtime_env(), configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=_runtime_env(), configure_logging=False)
    try:
        n_actors = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))

        @ray.remote(num_cpus=1)
        class PhotoWorker:
            """Holds one model and analyses shards of photos with it."""

            def __init__(self, load):
                self.model = load()

            def analyse(self, shard: Shard, analyse: Analyse) -> tuple[Shard, list[dict], float]:
                start = time.perf_counter()
                rows = analyse(self.model, shard)
                return shard, rows, time.perf_counter() - start

        pool = ActorPool([PhotoWorker.remote(load) for _ in range(min(n_actors, len(shards)) or 1)])
        yield from pool.map_unordered(lambda actor, shard: actor.analyse.remote(shard, analyse), list(shards))
    finally:
        if started_here:
            ray.shutdown()


def serial_shards(model, shards: Sequence[Shard], analyse: Analyse) -> Iterator[tuple[Shard, list[dict], float]]:
    """Yield ``(shard, rows, seconds)`` for each shard, computed here in order (the serial runner)."""
    for shard in shards:
        start = time.perf_counter()
        rows = analyse(model, shard)
        yield shard, rows, time.perf_counter() - start


__all__ = ["ray_shards", "serial_shards"]
