"""The Ray backend: one remote task per run (``num_cpus=1``), rows streamed into the CSV store as they finish.

Ray is optional (``pip install 'linft[ray]'``); it is imported only here, only when ``backend="ray"`` is asked for.
``address`` None starts a local cluster (with ``num_cpus`` CPUs when given, else every core) and shuts it down
afterwards; an address (``"auto"``, ``"ray://host:10001"``) connects to a running cluster, which is left running. A
Ray session already initialized in this process is used as it is. Workers get the driver's offline-hub and cache
settings (``HF_*_OFFLINE``, ``TOKENIZERS_PARALLELISM``, ``LINFT_CACHE``) through ``runtime_env``; on a multi-machine
cluster every node needs linft and the model/data packages installed. Each run pins torch to the sweep's ``threads``
(default 1), so its row equals the serial backend's row for the same key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from linft import LinftError
from linft.study._config import RunKey
from linft.study._run import attempt, failed_row, one_line

__all__ = ["ray_rows", "import_ray", "WORKER_ENV"]

#: environment variables passed on to Ray workers when set in the driver
WORKER_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
              "TOKENIZERS_PARALLELISM", "LINFT_CACHE")


def import_ray():
    """The ``ray`` module, or a one-line :class:`LinftError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise LinftError("backend='ray' needs Ray, which is not installed: pip install 'linft[ray]' "
                         "(or use backend='serial')") from None
    return ray


def _attempt_remote(key: RunKey, threads: int) -> dict:
    """What a Ray worker runs: :func:`linft.study._run.attempt` (a raised error becomes a failed row)."""
    return attempt(key, threads)


def _init(ray, address: str | None, num_cpus: int | None) -> bool:
    """Initialize Ray unless this process already has; True when this call started the session."""
    if ray.is_initialized():
        return False
    env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
    kwargs: dict = {"runtime_env": {"env_vars": env}, "log_to_driver": False}
    if address is None:
        kwargs.update(include_dashboard=False)
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    elif num_cpus is not None:
        raise LinftError(f"num_cpus={num_cpus} sizes a new local cluster only: drop it when connecting to "
                         f"address={address!r} (that cluster's nodes declare their own CPUs)")
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LinftError(f"could not start or reach a Ray cluster at address={address!r} ({first[:200]}): "
                         "check the address, or pass none for a local cluster") from None
    return True


def ray_rows(keys: list[RunKey], threads: int, address: str | None = None, num_cpus: int | None = None,
             on_submit: Callable[[int], None] | None = None) -> Iterator[dict]:
    """Run ``keys`` as Ray tasks (``num_cpus=1`` each, no retries) and yield each one's CSV row as it completes
    (``ray.wait``), in completion order. A task whose worker died is yielded as a failed row with Ray's error.
    ``on_submit(n)`` is called once all n tasks are submitted (after Ray started, which can take a while)."""
    if not keys:
        return
    ray = import_ray()
    started = _init(ray, address, num_cpus)
    pending: dict = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_attempt_remote)
        pending = {remote.remote(key, threads): key for key in keys}
        if on_submit is not None:
            on_submit(len(pending))
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                key = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as err:  # the worker crashed (killed, out of memory): record it, go on
                    row = failed_row(key, one_line(err), threads)
                yield row
    finally:
        if started:
            ray.shutdown()
        else:  # interrupted on a cluster that outlives us: do not leave its CPUs busy with runs nobody collects
            for ref in pending:
                ray.cancel(ref, force=True)
