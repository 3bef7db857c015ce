"""The serial link between the ground and the rover computer, both ends of it, and a harness.

``protocol`` (frames and messages), ``transport`` (ports, pacing, faults), ``device`` (the
server around the edge runtime), ``uplink`` (model store, verified atomic swap, rollback),
``host`` (client with retries), ``replay`` (measurement harness) and ``cli``. See
``docs/protocol.md`` and ``docs/parts/sim.md``. Never imports TensorFlow, Keras, ``trainer``
or ``quantize``.
"""
