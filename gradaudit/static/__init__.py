"""Static gain estimation: predict per-layer gradient gain from the LayerGraph alone.

AutoInit-style signal propagation (DESIGN.md, THEORY.md): moments forward, squared gradients
backward, one gain rule per op kind (registry.py), activations by quadrature (quadrature.py).
"""

from gradaudit.static.propagate import estimate

__all__ = ["estimate"]
