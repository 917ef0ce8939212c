"""Remedies: findings -> concrete recommendations (layers, amount, torch snippet).

Importing this package registers the remedies (gradaudit.remedies.answers, one module beside each
rule module) and the weight edits they make; it does not import torch, so `gradaudit explain`
can list a rule's remedies. Applying and verifying them (edits.apply, verify.verify) does.
"""

from gradaudit.remedies import answers  # noqa: F401  (registration)
from gradaudit.remedies.remedy_registry import REMEDY_KINDS, explain_remedies, recommend, remedies_for

__all__ = ["REMEDY_KINDS", "explain_remedies", "recommend", "remedies_for"]
