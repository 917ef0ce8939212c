"""The pipeline of DESIGN.md in one place: handle -> static -> probe -> rules -> remedies -> Audit.

Also the Python API: `gradaudit.audit(model, example_inputs)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gradaudit import gate
from gradaudit.graph import depth, flow_ends, output_ancestors, tied_end_layers, weight_layers
from gradaudit.i18n import _, current_language, ngettext, use_language
from gradaudit.model import ModelHandle
from gradaudit.report.audit_report import AuditReport
from gradaudit.results import Finding

# The trial training of `--verify` without a planned run: SGD with momentum 0.9 at 1e-2, the
# usual starting point (an exploded initialisation diverges there, a healthy one trains).
DEFAULT_TRIAL_LR = 1e-2
DEFAULT_TRIAL_OPTIMIZER = "momentum"


@dataclass
class AuditOptions:
    """How to run an audit; the CLI and the Python API both fill this."""

    passes: int = 3
    seed: int = 0
    static_only: bool = False
    sharpness: bool = False
    timeout: float | None = None
    data: tuple | None = None  # a real batch to probe with instead of synthetic inputs
    rule_config: Any = None  # gradaudit.rules.RuleConfig; None = defaults
    verify: bool = False  # re-analyse a copy with each weight-changing recommendation applied
    lr: float | None = None  # the planned run's learning rate (gradaudit.rules.planned_run)
    optimizer: str | None = None  # the planned run's optimizer: sgd | momentum | adam | adamw
    loss: str = "auto"  # the planned run's loss (gradaudit.config.LOSSES); the model's own wins
    trial_steps: int = 50  # steps of the trial run at `lr` (gradaudit.probe.trial)
    timing: dict[str, float] = field(default_factory=dict)


def run_audit(handle: ModelHandle, options: AuditOptions | None = None) -> AuditReport:
    """Analyse a loaded model; never modifies `handle.module`."""
    from gradaudit.hard_limits import stage
    from gradaudit.probe import run_probe
    from gradaudit.probe.trial import plan_trials
    from gradaudit.remedies import recommend
    from gradaudit.remedies.remedy_registry import ONNX_NOTE
    from gradaudit.remedies.verify import trial_comparison, verify
    from gradaudit.rules import explanations, run_rules
    from gradaudit.rules.planned_run import planned_config
    from gradaudit.static import estimate

    options = options or AuditOptions()
    timing = {"load_s": 0.0, "static_s": 0.0, "probe_s": 0.0, **options.timing}

    stage("analysing")
    started = time.perf_counter()
    static = estimate(handle.graph, handle.inputs, options.loss)
    timing["static_s"] = time.perf_counter() - started

    probe = None
    probe_skipped = handle.probe_unavailable
    if options.static_only:
        probe_skipped = _("static analysis only (--static-only)")
    elif handle.module is None or handle.runner is None:
        probe_skipped = probe_skipped or _("the model cannot be executed")
    if not probe_skipped:
        stage("probing")
        started = time.perf_counter()
        probe = run_probe(
            handle,
            passes=options.passes,
            seed=options.seed,
            data=options.data,
            sharpness=options.sharpness or options.lr is not None,  # a planned LR is judged against 2/sharpness
            timeout=options.timeout,
            loss=options.loss,
        )
        timing["probe_s"] = time.perf_counter() - started

    trials = None
    if probe is not None and options.lr is not None:
        stage("running trial steps of")
        trial_started = time.perf_counter()
        deadline = started + options.timeout if options.timeout is not None else None  # what the probe left
        trials = plan_trials(handle, options.lr, options.optimizer or "sgd", steps=options.trial_steps,
                             seed=options.seed, data=options.data, loss=options.loss, deadline=deadline)
        timing["trial_s"] = time.perf_counter() - trial_started

    stage("applying the rules to")
    rule_config = planned_config(options.rule_config, options.lr, options.optimizer, options.data is not None, trials)
    findings = run_rules(handle, static, probe, rule_config)
    recommendations = recommend(findings, handle, static, probe, rule_config)
    if options.verify:
        stage("verifying the changes to")
        verify(handle, static, probe, recommendations, passes=options.passes, seed=options.seed, data=options.data,
               loss=options.loss)
        if probe is not None:
            stage("trial-training the best change to")
            deadline = started + options.timeout if options.timeout is not None else None
            trial_comparison(handle, recommendations, lr=options.lr or DEFAULT_TRIAL_LR,
                             optimizer=options.optimizer or DEFAULT_TRIAL_OPTIMIZER, steps=options.trial_steps,
                             seed=options.seed, data=options.data, loss=options.loss, deadline=deadline)
    return AuditReport(
        source=handle.source,
        format=handle.format,
        parameters=handle.parameters,
        weight_layers=len(weight_layers(handle.graph)),
        depth=depth(handle.graph),
        verdict=gate.verdict(findings),
        diagnosis=probe.diagnosis if probe is not None else static.diagnosis,
        static=static,
        probe=probe,
        probe_skipped=probe_skipped,
        findings=findings,
        recommendations=recommendations,
        timing=timing,
        partial=bool(handle.graph.graph.get("partial")) or static.partial,
        notes=list(handle.warnings) + _tied_notes(handle) + _unused_notes(handle)
        + ([_(ONNX_NOTE)] if recommendations and handle.format == "onnx" else []),
        explanations=explanations(f.code for f in findings),
        locations=_source_locations(handle, findings),
        language=current_language(),
    )


def _tied_notes(handle: ModelHandle) -> list[str]:
    note = _("{param} is used by {count} layers (tied weights): its gradient is the sum of theirs, and the "
             "first/last gradient ratio compares that sum")
    return [note.format(param=param, count=count) for param, count in tied_end_layers(handle.graph).items()]


def _unused_notes(handle: ModelHandle) -> list[str]:
    layers = weight_layers(handle.graph)
    flowing = {layer.param for layer in flow_ends(handle.graph, layers)}
    used = output_ancestors(handle.graph)
    unused = [layer.layer for layer in layers if layer.param not in flowing and layer.node not in used]
    blocked = [layer.layer for layer in layers if layer.param not in flowing and layer.node in used]
    notes = []
    if unused and handle.graph.graph.get("partial"):  # a graph with missing ops: the missing link may be one of them
        notes.append(ngettext(
            "{layers}: the partial graph does not connect it to an output (left out of the first/last ratio)",
            "{layers}: the partial graph does not connect them to an output (left out of the first/last ratio)",
            len(unused)).format(layers=", ".join(unused)))
    elif unused:
        notes.append(ngettext(
            "{layers}: no output depends on it, so no gradient reaches it (left out of the first/last ratio)",
            "{layers}: no output depends on them, so no gradient reaches them (left out of the first/last ratio)",
            len(unused)).format(layers=", ".join(unused)))
    if blocked:
        notes.append(ngettext(
            "{layers}: a zero-initialised layer or gate between it and the output passes back no gradient until "
            "its first update (left out of the first/last ratio)",
            "{layers}: a zero-initialised layer or gate between them and the output passes back no gradient until "
            "its first update (left out of the first/last ratio)",
            len(blocked)).format(layers=", ".join(blocked)))
    return notes


def _source_locations(handle: ModelHandle, findings: list[Finding]) -> dict[str, dict[str, Any]]:
    """Source file and line of each finding's layers, for a PyTorch model (not TorchScript)."""
    import torch

    module = handle.module
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        return {}
    from gradaudit.loaders.torch_locations import layer_locations

    layers = dict.fromkeys(layer for finding in findings for layer in finding.layers)
    return layer_locations(handle.module, layers, handle.source)


def audit(model: Any, example_inputs: Any, loss_fn: Any = None, lang: str = "en", **options: Any) -> AuditReport:
    """Audit a torch module on example inputs (a tensor or a tuple of tensors).

    `loss_fn(outputs, inputs) -> scalar tensor`, when given, is the loss the probe, the sharpness
    and the trial runs use (it wins over `loss`). `lang` is the language the audit is worded and
    rendered in (gradaudit.i18n.LANGUAGES). Keyword options are those of AuditOptions (passes,
    seed, static_only, sharpness, timeout, data, rule_config, verify, lr, optimizer, loss,
    trial_steps).
    """
    import dataclasses

    from gradaudit.loaders.torch_loader import from_module

    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    started = time.perf_counter()
    handle = dataclasses.replace(from_module(model, inputs), loss_fn=loss_fn)
    opts = AuditOptions(**options)
    opts.timing["load_s"] = time.perf_counter() - started
    with use_language(lang):
        return run_audit(handle, opts)
