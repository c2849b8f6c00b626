"""The one place a QPU provider name becomes an adapter.

``emulated`` is `solvers.qpu.EmulatedQpu` (a fake IBM device on Aer), ``ibm`` is
`solvers.qpu_ibm.IbmQuantumQpu`, ``braket`` is `solvers.qpu_braket.BraketQpu`, ``http`` is
`solvers.qpu_http.HttpQpu` (a REST provider over mutual TLS). Provider modules (and their
SDKs) are imported only when their provider is asked for, so the emulated lane does not need (or pay for
importing) braket or an IBM account. Nothing here reads settings: the caller passes plain values.

The adapter modules import `solvers.qpu_base` and never this module, so there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from solvers.qpu_base import QpuAdapter

PROVIDERS = ("emulated", "ibm", "braket", "http")


def adapter_class(provider: str) -> type[QpuAdapter]:
    """The adapter class for ``provider`` (one of `PROVIDERS`)."""
    if provider == "emulated":
        from solvers.qpu import EmulatedQpu

        return EmulatedQpu
    if provider == "ibm":
        from solvers.qpu_ibm import IbmQuantumQpu

        return IbmQuantumQpu
    if provider == "braket":
        from solvers.qpu_braket import BraketQpu

        return BraketQpu
    if provider == "http":
        from solvers.qpu_http import HttpQpu

        return HttpQpu
    raise ValueError(f"unknown qpu provider {provider!r}; expected emulated, ibm, braket or http")


def make_qpu_adapter(provider: str, *, backend_name: str, queue_delay_s: float, failure_rate: float,
                     env: Mapping[str, str]) -> QpuAdapter:
    """The adapter a qpu-lane worker runs, from plain configuration values.

    ``emulated``: the fake device ``backend_name`` with ``queue_delay_s`` and ``failure_rate``. ``ibm``
    and ``braket``: their device and credentials from ``env`` (``QGATE_IBM_*``; ``QGATE_BRAKET_DEVICE_ARN``
    and boto3's chain), as `IbmQuantumQpu.from_env` and `BraketQpu.from_env` read them; ``http``: its URL,
    device and TLS files from ``env`` (``QGATE_QPU_HTTP_*``, `HttpQpu.from_env`).
    """
    return adapter_class(provider).configured(backend_name=backend_name, queue_delay_s=queue_delay_s,
                                              failure_rate=failure_rate, env=env)


def qpu_adapter(provider: str = "emulated", **options: Any) -> QpuAdapter:
    """An adapter for ``provider`` built with ``options`` given to its constructor (tests, benches)."""
    return adapter_class(provider)(**options)
