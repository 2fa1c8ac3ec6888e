"""The study's batches as Ray tasks: one model per worker, photos in deterministic shards.

Ray (Moritz et al., "Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018) runs one task
per shard (a batch of photos), at most one per worker CPU at a time; each worker process loads the model
once (``load``) and analyses the shards it is given with the function it is handed (``analyse(model,
shard) -> rows``), so this module knows nothing of the study. Tasks rather than actors, because Ray runs
a task whose worker died again on any other worker (``RAY_RETRIES``). The shards are exactly the serial runner's batches, in the same order and of the same size, so every
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


#: How often Ray runs a shard again on another worker after the worker running it died (``max_retries``).
RAY_RETRIES = 2
#: Seconds to wait for a cluster's address to answer before ``ray_shards`` gives up on it.
CONNECT_TIMEOUT_S = 10.0


class WorkerLost(RuntimeError):
    """Ray workers died on some shards more often than ``RAY_RETRIES`` allows; ``lost`` holds those shards
    (every other shard was yielded, so its rows are kept)."""

    def __init__(self, lost: list, reason: str):
        photos = sum(len(shard) for shard in lost)
        super().__init__(f"a Ray worker died on {len(lost)} batch(es) ({photos} photo(s)) {RAY_RETRIES + 1} times "
                         f"in a row ({reason})")
        self.lost = lost


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``ConnectionError`` (one sentence naming ``address``) unless a Ray cluster answers there: its
    host must take a connection on its port within ``timeout`` seconds, and then Ray's own handshake
    (``ray.init(address=...)``, in a child process that is ended after ``HANDSHAKE_TIMEOUT_S``) must
    succeed, so that a port where something else answers fails in seconds too (Ray itself retries for
    minutes). ``auto`` and ``local`` are left to Ray, which answers at once."""
    import socket

    if address in ("auto", "local"):
        return
    host_port = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ConnectionError(f"--ray {address!r} is not a Ray address: give HOST:PORT, ray://HOST:PORT or "
                              f"'auto'.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ConnectionError(f"cannot reach a Ray cluster at {address} ({reason} within {timeout:.0f} s); "
                              f"start one ('ray start --head') or check the address.") from None
    _ray_handshake(address)


#: Seconds Ray's handshake with a cluster may take before the address is given up.
HANDSHAKE_TIMEOUT_S = 20.0
_HANDSHAKE = ("import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False, "
              "logging_level='ERROR'); ray.shutdown()")


def _ray_handshake(address: str, timeout: float = HANDSHAKE_TIMEOUT_S) -> None:
    """Join the cluster at ``address`` from a child process (Ray's own handshake) and leave again; raise
    ``ConnectionError`` when that fails or takes longer than ``timeout`` seconds (the child is ended)."""
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", _HANDSHAKE, address], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = child.communicate(timeout=timeout)
    except BaseException as stop:   # the time limit, Ctrl-C, SIGTERM: the child and its helpers go too
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        if isinstance(stop, subprocess.TimeoutExpired):
            raise ConnectionError(f"no Ray cluster answered at {address} within {timeout:.0f} s (something "
                                  f"else listens there?); start one ('ray start --head') or check the "
                                  f"address.") from None
        raise
    if child.returncode != 0:
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        reason = lines[-1].strip()[:200] if lines else f"exit status {child.returncode}"
        raise ConnectionError(f"cannot join a Ray cluster at {address} ({reason}); start one "
                              f"('ray start --head') or check the address.")


#: Models loaded in this (worker) process, by the id of the loader's object in the Ray store.
_MODELS: dict[str, object] = {}


def _analyse_shard(load_ref: list, analyse: Analyse, shard: Shard) -> tuple[list[dict], float]:
    """A Ray task: ``analyse(model, shard)`` with the model of ``load_ref[0]`` (an object reference, kept
    unresolved inside a list), loaded once per worker process and reused by its later shards."""
    import ray

    key = load_ref[0].hex()
    if key not in _MODELS:
        _MODELS.clear()  # one model a worker: another study's is no longer needed
        _MODELS[key] = ray.get(load_ref[0])()
    start = time.perf_counter()
    rows = analyse(_MODELS[key], shard)
    return rows, time.perf_counter() - start


def ray_shards(shards: Sequence[Shard], analyse: Analyse, load: Callable[[], object],
               address: str | None = None, workers: int | None = None
               ) -> Iterator[tuple[Shard, list[dict], float]]:
    """Yield ``(shard, rows, seconds)`` for each shard as Ray workers finish it (completion order).

    ``rows`` are ``analyse(model, shard)`` computed by a Ray task on a worker that loaded ``model = load()``
    once; ``seconds`` is the worker's wall time for the shard. ``address=None`` starts a local cluster with
    ``workers`` CPUs (default: all of this machine's) and shuts it down at the end; otherwise it connects
    to the cluster at ``address`` (``check_reachable`` first: an address that does not answer fails within
    ``CONNECT_TIMEOUT_S``) and keeps ``workers`` shards in flight (default: the cluster's CPUs).

    A worker that dies (killed, out of memory, its node lost) costs only its shard's progress: Ray runs the
    shard again on another worker, up to ``RAY_RETRIES`` times. A shard that still fails is set aside,
    the other shards go on, and ``WorkerLost`` is raised after the last of them was yielded. Ctrl-C and
    SIGTERM raise ``KeyboardInterrupt`` here as elsewhere (Ray's own SIGTERM handler, which would end the
    process, is replaced by the one in place before).
    """
    import signal
    import threading

    try:
        import ray
        from ray.exceptions import NodeDiedError, ObjectLostError, WorkerCrashedError
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("The distributed study needs Ray: pip install 'ray>=2.9'.") from None
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers}.")
    if not shards:
        return
    started_here = not ray.is_initialized()
    in_main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
    if started_here:
        if address is None:
            ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     runtime_env=_runtime_env(), configure_logging=False)
        else:
            check_reachable(address)
            ray.init(address=address, log_to_driver=False, runtime_env=_runtime_env(), configure_logging=False)
        if in_main_thread and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)  # ray.init installs a handler that exits at once
    try:
        in_flight = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_analyse_shard)
        load_ref = [ray.put(load)]
        queue, pending, lost, reason = list(shards), {}, [], ""
        while queue or pending:
            while queue and len(pending) < in_flight:
                shard = queue.pop(0)
                pending[task.remote(load_ref, analyse, shard)] = shard
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)  # (a signal is seen within 1 s)
            for ref in ready:
                shard = pending.pop(ref)
                try:
                    rows, seconds = ray.get(ref)
                except (WorkerCrashedError, NodeDiedError, ObjectLostError) as err:
                    lost.append(shard)
                    reason = type(err).__name__
                    continue
                yield shard, rows, seconds
        if lost:
            raise WorkerLost(lost, reason)
    finally:
        if started_here:
            ray.shutdown()


def serial_shards(model, shards: Sequence[Shard], analyse: Analyse) -> Iterator[tuple[Shard, list[dict], float]]:
    """Yield ``(shard, rows, seconds)`` for each shard, computed here in order (the serial runner)."""
    for shard in shards:
        start = time.perf_counter()
        rows = analyse(model, shard)
        yield shard, rows, time.perf_counter() - start


__all__ = ["RAY_RETRIES", "WorkerLost", "check_reachable", "ray_shards", "serial_shards"]
