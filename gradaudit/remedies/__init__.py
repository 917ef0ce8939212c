"""Remedies: findings -> concrete recommendations (layers, amount, torch snippet).

Importing this package registers the six remedy kinds (kinds.py) with the registry.
"""

from gradaudit.remedies import kinds  # noqa: F401  (registration)
from gradaudit.remedies.registry import REMEDY_KINDS, recommend, remedies_for

__all__ = ["REMEDY_KINDS", "recommend", "remedies_for"]
