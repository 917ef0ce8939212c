"""The rules: findings from the graph, the static estimate and the probe (see registry.py).

Importing this package registers every rule; `gradaudit explain CODE` prints a rule's doc.
"""

from gradaudit.rules import activity, architecture, coverage, flow, planned_run, weights  # noqa: F401  (registration)
from gradaudit.rules.rule_registry import Rule, RuleConfig, all_rules, explain, explanations, get_rule, run_rules

__all__ = ["Rule", "RuleConfig", "all_rules", "explain", "explanations", "get_rule", "run_rules"]
