"""Remedies: findings -> concrete recommendations (layers, amount, torch snippet).

Importing this package registers the six remedy kinds (kinds.py) with the registry, and their
weight edits (edits.py), which `verify` applies to a copy to re-measure before/after.
"""

from gradaudit.remedies import kinds  # noqa: F401  (registration)
from gradaudit.remedies.edits import apply
from gradaudit.remedies.registry import REMEDY_KINDS, recommend, remedies_for
from gradaudit.remedies.verify import verify

__all__ = ["REMEDY_KINDS", "apply", "recommend", "remedies_for", "verify"]
