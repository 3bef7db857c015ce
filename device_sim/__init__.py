"""The serial link between the ground and the rover computer, both ends of it, and a harness.

``protocol`` (frames and messages), ``transport`` (ports, pacing, faults) with
``protocol_pty`` (pyserial's ``pty://`` handler), ``device`` (the server), ``backend`` (the
edge runtime behind it), ``proc`` (the device process's CPU, malloc and RSS), ``uplink``
(model store, verified atomic swap, rollback), ``host`` (client with retries), the
measurement harness ``replay`` with ``spectra`` (what is sent), ``launcher`` (the device
process), ``stats`` and ``report`` (JSON + PNG), and ``cli``. See ``docs/protocol.md`` and
``docs/parts/sim.md``. Never imports TensorFlow, Keras, ``trainer`` or ``quantize``.

The stable API is the names below, importable from ``device_sim`` itself, plus the wire
format module :mod:`device_sim.protocol` (``from device_sim import protocol as P``)::

    from device_sim import Device, DeviceConfig, HostClient, HostConfig, Link, open_pty_pair

* rover end (:mod:`device_sim.device`): :class:`Device`, :class:`DeviceConfig`,
  :func:`open_store` (its validating model store), :func:`run_device`; its model runtime
  (:mod:`device_sim.backend`): :func:`edge_loader`, :class:`EdgeBackend` (the edge runtime
  behind the link), the :class:`Backend` protocol and its :class:`Classification`;
* model store (:mod:`device_sim.uplink`): :class:`ModelStore`, :class:`Upload`,
  :class:`UploadError`, :func:`artifact_files`;
* ground end (:mod:`device_sim.host`): :class:`HostClient`, :class:`HostConfig`,
  :class:`DeviceError`;
* link (:mod:`device_sim.transport`): :class:`Link`, :func:`open_port`,
  :func:`open_pty_pair`, :class:`FaultConfig`, :class:`Pacer` and its injectable
  :class:`Clock` (:class:`SystemClock` by default);
* measurement harness (:mod:`device_sim.replay`; its ``replay`` function shares the
  module's name, so it is called as ``device_sim.replay.replay``): :class:`ReplayConfig`,
  :func:`load_items` (:mod:`device_sim.spectra`), :func:`write_report`
  (:mod:`device_sim.report`).

``import device_sim`` stays light: a name is imported from its submodule on first use
(PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ramanedge.lazy import lazy_exports

if TYPE_CHECKING:
    from device_sim.backend import Backend, Classification, EdgeBackend, edge_loader
    from device_sim.device import Device, DeviceConfig, open_store, run_device
    from device_sim.host import DeviceError, HostClient, HostConfig
    from device_sim.replay import ReplayConfig
    from device_sim.report import write_report
    from device_sim.spectra import load_items
    from device_sim.transport import (
        Clock,
        FaultConfig,
        Link,
        Pacer,
        SystemClock,
        open_port,
        open_pty_pair,
    )
    from device_sim.uplink import ModelStore, Upload, UploadError, artifact_files

#: submodule -> the public names it defines (imported on first use)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "device": ("Device", "DeviceConfig", "open_store", "run_device"),
    "backend": ("Backend", "Classification", "EdgeBackend", "edge_loader"),
    "uplink": ("ModelStore", "Upload", "UploadError", "artifact_files"),
    "host": ("DeviceError", "HostClient", "HostConfig"),
    "transport": ("Clock", "FaultConfig", "Link", "Pacer", "SystemClock", "open_port",
                  "open_pty_pair"),
    "replay": ("ReplayConfig",),
    "spectra": ("load_items",),
    "report": ("write_report",),
}

__all__ = [
    "Backend",
    "Classification",
    "Clock",
    "Device",
    "DeviceConfig",
    "DeviceError",
    "EdgeBackend",
    "FaultConfig",
    "HostClient",
    "HostConfig",
    "Link",
    "ModelStore",
    "Pacer",
    "ReplayConfig",
    "SystemClock",
    "Upload",
    "UploadError",
    "artifact_files",
    "edge_loader",
    "load_items",
    "open_port",
    "open_pty_pair",
    "open_store",
    "run_device",
    "write_report",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
