"""The rules: findings from the graph, the static estimate and the probe (see rule_registry.py).

Importing this package imports every module in it, which registers its rules (a new module here
needs no other line to take part); `gradaudit explain CODE` prints a rule's doc.
"""

import importlib
import pkgutil

from gradaudit.rules.rule_registry import Rule, RuleConfig, all_rules, explain, explanations, get_rule, run_rules

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Rule", "RuleConfig", "all_rules", "explain", "explanations", "get_rule", "run_rules"]
