"""ramanedge: mineral identification from raw Raman spectra on rover-class computers.

This package is the small TensorFlow-free shared core: spectra I/O, the model grid,
normalisation, the model manifest and the command line. Training (``trainer``),
export (``quantize``), the onboard runtime (``edge_runtime``) and the serial-link
simulator (``device_sim``) all build on it, so the ground and the rover run the *same*
preprocessing code.
"""

from ramanedge.errors import RamanEdgeError

__all__ = ["RamanEdgeError", "__version__"]
__version__ = "0.1.0"
