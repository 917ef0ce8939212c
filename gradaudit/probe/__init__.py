"""The dynamic probe: a few real forward+backward passes that measure gradient flow.

`run_probe(handle)` returns a ProbeResult (per weight layer gradient and weight RMS, activation
statistics, non-finite detection, gradient through time of recurrent layers, optional sharpness)
and its diagnosis, without mutating the user's module or consuming the caller's RNG.
"""

from gradaudit.probe.run import run_probe

__all__ = ["run_probe"]
