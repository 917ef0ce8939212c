"""Command line: `gradaudit check MODEL`, `gradaudit rules`, `gradaudit explain CODE`.

`main(argv) -> int` is the single entry point (tests call it directly); exit codes follow
DESIGN.md: 0 pass, 1 gate failed, 2 usage or input error, 3 internal error. Heavy imports (torch)
happen inside the commands so `--help` and `rules` stay fast.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import os
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import click

from gradaudit import gate
from gradaudit.config import LOSSES
from gradaudit.errors import GradauditError, InputError
from gradaudit.i18n import LANGUAGES, checked_language, use_language
from gradaudit.optimizers import OPTIMIZERS
from gradaudit.terminal import library_output_captured, say
from gradaudit.version import __version__

if TYPE_CHECKING:
    from gradaudit.settings import Settings


def _parse_shape(text: str) -> tuple[int, ...]:
    from gradaudit.settings import parse_shape

    try:
        return parse_shape(text)
    except ValueError as problem:
        raise click.BadParameter(str(problem)) from None


def _shapes_callback(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[int, ...]] | None:
    return [_parse_shape(v) for v in values] or None


def _memory_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from gradaudit.limits import parse_size

    try:
        return parse_size(value) if value is not None else None
    except ValueError as problem:
        raise click.BadParameter(str(problem)) from None


def _language_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A language gradaudit speaks; anything else is one line and exit 2 (InputError), not
    click's usage block."""
    if value is None:
        return None
    try:
        return checked_language(value)
    except InputError as problem:
        raise InputError(f"--lang: {problem}") from None


def _language_option(command):
    return click.option("--lang", callback=_language_callback, metavar="|".join(LANGUAGES),
                        help="Language of the reports and explanations [en; `lang` in [tool.gradaudit]].")(command)


def _configured_language(lang: str | None) -> str:
    """`--lang`, else GRADAUDIT_LANG, else `lang` of the nearest pyproject.toml, else English."""
    from gradaudit.settings import resolve_settings

    return resolve_settings({"lang": lang}).lang


def _use_color(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def _check_output_paths(sources: Sequence[str], outputs: dict[str, str | None], read: dict[str, str | None]) -> None:
    """Refuse, before any work, an output that is a directory, lacks a folder, or is a file the
    run reads: a model, its external data, or one of `read` (what -> path; gradaudit.output_guard)."""
    from itertools import chain

    from gradaudit.output_guard import model_inputs, refuse_outputs_over_inputs

    for flag, value in outputs.items():
        if not value:
            continue
        path = Path(value)
        if path.is_dir():
            raise InputError(f"{flag} {value}: is a directory")
        if not path.parent.resolve().is_dir():
            raise InputError(f"{flag} {value}: folder {path.parent} does not exist")
    asked = [value for value in outputs.values() if value]
    refuse_outputs_over_inputs(outputs, chain(read.items(), model_inputs(sources, asked)))


def _config_read(config_file: str | None) -> str | None:
    """The config file the settings come from (as gradaudit.config.resolve picks it)."""
    from gradaudit.config import find_pyproject

    found = config_file or find_pyproject()
    return str(found) if found else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradaudit")
def cli() -> None:
    """Audit a neural network for exploding and vanishing gradients before training it."""


MODEL_SUFFIXES = (".onnx", ".pt2")


def _model_files(folder: str) -> list[str]:
    """The model files under `folder`, sorted. Walked with an explicit stack, not recursion (a
    tree 1,000 folders deep exhausts Python's recursion limit); symlinked folders are not entered."""
    found, pending = [], [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif Path(entry.name).suffix.lower() in MODEL_SUFFIXES and entry.is_file():
                        found.append(entry.path)
        except OSError as problem:
            raise InputError(f"{current}: cannot list the folder ({problem.strerror or problem})") from None
    return sorted(found)


def _expand_sources(sources: Sequence[str]) -> list[str]:
    """Model files and specs in the order given; a directory stands for its model files."""
    expanded: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = _model_files(source)
            if not found:
                raise InputError(f"{source}: directory contains no model files ({', '.join(MODEL_SUFFIXES)})")
            expanded.extend(found)
        else:
            expanded.append(source)
    return expanded


# click parameters named differently from the setting they set
_SETTING_OF_PARAMETER = {"baseline_file": "baseline"}


def _settings(ctx: click.Context, config_file: str | None) -> Settings:
    """The run's settings: the flags the user typed win over environment and pyproject."""
    from gradaudit.settings import Settings, resolve_settings

    settable = {field.name for field in dataclasses.fields(Settings)}
    typed = {}
    for name, value in ctx.params.items():
        setting = _SETTING_OF_PARAMETER.get(name, name)
        if setting in settable and ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            typed[setting] = value
    return resolve_settings(typed, config_file)


class _Progress:
    """Elapsed-time line on stderr while a model is analysed, only on a terminal."""

    def __init__(self, label: str, enabled: bool):
        from gradaudit.report.common import clean

        self.label, self.enabled = clean(label), enabled  # the label quotes a file name
        self._stop = None

    def __enter__(self):
        if self.enabled:
            import threading

            self._stop = threading.Event()
            started = time.perf_counter()

            def tick() -> None:
                while not self._stop.wait(0.5):
                    elapsed = time.perf_counter() - started
                    if elapsed >= 1.0:
                        sys.stderr.write(f"\r{self.label} {elapsed:5.1f}s")
                        sys.stderr.flush()
                sys.stderr.write("\r\033[K")

            self._thread = threading.Thread(target=tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()


def _audit_all(sources: Sequence[str], settings: Settings, quiet: bool):
    """Load and audit every model; the first unusable one stops the run (exit 2, nothing written)."""
    from gradaudit.pipeline import audit_source

    # The loaders build ~10^5 small acyclic objects per 10k-node graph; at CPython's default gen-0
    # threshold (700 allocations) the collector rescans them over and over: 20% of loading such
    # an ONNX graph (1.46 s -> 1.18 s). Cycles are still collected, 70x less often.
    gc.set_threshold(50_000, *gc.get_threshold()[1:])
    audits = []
    for source in _expand_sources(sources):
        with _Progress(f"gradaudit: auditing {Path(source).name}", enabled=not quiet and sys.stderr.isatty()):
            audits.append(audit_source(source, settings))
    return audits


def _common_options(command):
    """Options shared by `check` and `baseline`: how to load and analyse the models."""
    decorators = [
        click.argument("sources", nargs=-1, required=True),
        click.option(
            "--input-shape",
            "input_shapes",
            multiple=True,
            callback=_shapes_callback,
            help="Shape of one model input, batch first (e.g. 8,3,32,32); repeat for several inputs.",
        ),
        click.option(
            "--batch", type=click.IntRange(1), help="Batch size for symbolic batch dimensions of ONNX inputs [8]."
        ),
        click.option(
            "--passes", type=click.IntRange(1, 100), help="Real forward+backward passes of the dynamic probe [3]."
        ),
        click.option("--seed", type=int, help="Seed of the synthetic batches and the default loss [0]."),
        click.option(
            "--static-only", is_flag=True, default=None, help="Skip the dynamic probe (no forward or backward pass)."
        ),
        click.option(
            "--sharpness", is_flag=True, help="Also estimate the loss sharpness (largest Hessian eigenvalue)."
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=1.0),
            help="Seconds the audit of each model may take, from load to verification [300].",
        ),
        click.option(
            "--max-memory",
            callback=_memory_callback,
            metavar="SIZE",
            help="Memory the audit of each model may take, e.g. 8G or 512M [half of RAM].",
        ),
        click.option(
            "--trust",
            is_flag=True,
            help="Load files that run code: pickled modules, TorchScript, any .pt2 (README: Safety).",
        ),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            help="Read [tool.gradaudit] from this TOML file instead of the nearest pyproject.toml.",
        ),
        click.option("--quiet", "-q", is_flag=True, help="Print only one verdict line per model."),
        click.option("--debug", is_flag=True, help="Show tracebacks."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _run_options(command):
    """Options of `check` and `fix`: verification and the planned training run."""
    decorators = [
        click.option("--verify", is_flag=True,
                     help="Re-probe a copy with each change applied (before/after); trial-train the best one."),
        click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), help="Learning rate of the planned run."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS),
                     help="Optimizer of the planned run [sgd]."),
        click.option("--loss", type=click.Choice(LOSSES),
                     help="Loss of the probe and the planned run [auto]; your own wins: a factory returning "
                          "(module, inputs, loss_fn), or gradaudit.audit(..., loss_fn=f)."),
        click.option("--trial-steps", type=click.IntRange(1, 10_000),
                     help="Steps of the trial run at --lr on a copy of the model [50]."),
        click.option("--data", type=click.Path(dir_okay=False),
                     help="A real input batch (.npy, .npz, .pt) to probe with instead of synthetic inputs."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _report_params() -> list[click.Parameter]:
    """`--format` and the also-write options (`--json PATH`, ...), one per registered format."""
    from gradaudit.report import report_formats

    formats = report_formats()
    printed = click.Option(["--format", "fmt"], type=click.Choice([declared.name for declared in formats]),
                           default="text", show_default=True, help="Report printed on stdout.")
    return [printed] + [
        click.Option([declared.also_write, declared.path_parameter], type=click.Path(dir_okay=False),
                     help=declared.also_write_help)
        for declared in formats if declared.also_write
    ]


class _ReportingCommand(click.Command):
    """A command whose report options come from the registry of report formats
    (gradaudit.report.formats), read when its command line is parsed or its help shown, so a
    registered format needs no edit here. They follow the parameter named `after`."""

    def __init__(self, *args, after: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.after = after
        self._report_params: tuple[tuple[object, ...], list[click.Parameter]] = ((), [])

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        from gradaudit.report import report_formats

        declared = tuple(report_formats())
        if self._report_params[0] != declared:  # click asks several times per parse: the same objects each time
            self._report_params = (declared, _report_params())
        params = super().get_params(ctx)
        at = next(index for index, param in enumerate(params) if param.name == self.after) + 1
        return params[:at] + self._report_params[1] + params[at:]


@cli.command(cls=_ReportingCommand, after="baseline_file")
@_common_options
@click.option(
    "--fail-on",
    type=click.Choice(gate.FAIL_ON_CHOICES),
    help="Lowest finding severity that fails the gate (exit 1) [error].",
)
@click.option(
    "--baseline",
    "baseline_file",
    type=click.Path(dir_okay=False),
    help="Fail only on findings this baseline does not record.",
)
@_language_option
@_run_options
@click.pass_context
def check(ctx: click.Context, sources, config_file, quiet, fmt, **options) -> None:
    """Audit models: .onnx files, .pt2 / TorchScript files, `module:factory` specs or folders."""
    from gradaudit.report import report_formats

    settings = _settings(ctx, config_file)
    files = {declared.also_write: options[declared.path_parameter] for declared in report_formats()
             if declared.also_write}
    with use_language(settings.lang):
        _check(settings, sources, config_file, quiet, fmt, files)


def _check(settings: Settings, sources, config_file, quiet: bool, fmt: str, files: dict[str, str | None]) -> None:
    """`check` in the configured language: audit, write the asked reports, print one, exit."""
    from gradaudit import baseline
    from gradaudit.report import Format, render_all, report_formats, write_atomic

    _check_output_paths(
        _expand_sources(sources),
        files,
        {
            "config file": _config_read(config_file),
            "baseline": settings.baseline,
            "--data batch": settings.data,
        },
    )
    known = baseline.load(settings.baseline, settings.max_memory) if settings.baseline else None
    audits = _audit_all(sources, settings, quiet)

    name_of = {declared.also_write: declared.name for declared in report_formats()}
    rendered = {flag: render_all(audits, name_of[flag]) for flag, path in files.items() if path}
    for flag, text in rendered.items():
        write_atomic(files[flag], text)
    code = max(gate.exit_code(baseline.new_findings(a, known), settings.fail_on) for a in audits)
    if quiet:
        for a in audits:
            say(f"{a.verdict}: {a.diagnosis.label} ({a.source})")
    elif fmt == "text":
        click.echo(render_all(audits, Format.TEXT, color=_use_color(sys.stdout)), nl=False)
    else:
        click.echo(render_all(audits, fmt), nl=False)
    raise click.exceptions.Exit(code)


@cli.command("baseline")
@_common_options
@click.option("--output", "-o", "output", required=True, type=click.Path(dir_okay=False),
              help="Baseline file to write (e.g. .gradaudit-baseline.json).")
@click.pass_context
def baseline_command(ctx: click.Context, sources, config_file, quiet, output, **_) -> None:
    """Record the current findings of models so `check --baseline` fails only on new ones."""
    from gradaudit import baseline
    from gradaudit.report import write_atomic

    settings = _settings(ctx, config_file)
    _check_output_paths(_expand_sources(sources), {"--output": output}, {"config file": _config_read(config_file)})
    audits = _audit_all(sources, settings, quiet)
    write_atomic(output, baseline.to_json(audits))
    count = sum(len(a.findings) for a in audits)
    say(f"gradaudit: recorded {count} finding(s) of {len(audits)} model(s) in {output}", err=True)


@cli.command("fix")
@click.argument("source")
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False),
              help="Fixed ONNX model to write (a new file; never the input). Factories get a printed patch instead.")
@click.option("--input-shape", "input_shapes", multiple=True, callback=_shapes_callback,
              help="Shape of one model input, batch first; repeat for several inputs.")
@click.option("--batch", type=click.IntRange(1), help="Batch size for symbolic dimensions [8].")
@click.option("--passes", type=click.IntRange(1, 100), help="Probe passes per analysis [3].")
@click.option("--seed", type=int, help="Seed of the probe batches and re-draws [0].")
@click.option("--data", type=click.Path(dir_okay=False), help="A real input batch (.npy, .npz, .pt) to probe with.")
@click.option(
    "--trust", is_flag=True, help="Load files that run code: pickled modules, TorchScript, any .pt2 (README: Safety)."
)
@click.option("--fail-on", type=click.Choice(gate.FAIL_ON_CHOICES),
              help="Lowest finding severity of the fixed model that fails (exit 1) [error].")
@click.option("--timeout", type=click.FloatRange(min=1.0),
              help="Seconds the fix may take, from load to the audit of the fixed model [300].")
@click.option("--max-memory", callback=_memory_callback, metavar="SIZE",
              help="Memory the fix may take, e.g. 8G or 512M [half of RAM].")
@click.option("--structural", is_flag=True,
              help="Also apply a verified architecture change (norms, scaled skips, activation swap).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Also write an HTML report comparing the model before and after the fix (one chart).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Read [tool.gradaudit] from this TOML file instead of the nearest pyproject.toml.")
@_language_option
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def fix_command(ctx: click.Context, source, output, structural, html_path, config_file, **_) -> None:
    """Apply the verified weight-level changes (and, with --structural, an architecture change that
    helped): write a fixed ONNX model, or print a patch for a factory."""
    settings = _settings(ctx, config_file)
    with use_language(settings.lang):
        _fix(source, output, settings, config_file, structural, html_path)


def _fix(source: str, output: str | None, settings: Settings, config_file: str | None, structural: bool,
         html_path: str | None) -> None:
    """`fix` in the configured language; with `html_path`, the before/after comparison report."""
    from gradaudit import fixer
    from gradaudit.pipeline import audit_options, limits, load_source
    from gradaudit.report import Format, render_all, write_atomic

    writes_model = source.lower().endswith(".onnx")
    if writes_model and not output:
        raise InputError("fix: an ONNX model needs --output/-o for the fixed file")
    _check_output_paths([source], {"--output": output, "--html": html_path},
                        {"config file": _config_read(config_file), "--data batch": settings.data})
    settings = dataclasses.replace(settings, static_only=False)  # a change is verified by re-probing the model
    with limits(source, settings):
        options = audit_options(settings)
        if writes_model:
            result = fixer.fix_onnx(source, output, options, settings.shape_list, settings.batch, structural)
        else:
            result = fixer.fix_handle(load_source(source, settings), options, structural)
    if html_path:
        write_atomic(html_path, render_all(fixer.before_and_after(result), Format.HTML))
    if not writes_model:
        say(fixer.patch(result), multiline=True, nl=False)
    for rec in result.applied:
        rewrites = f" and {len(rec.rewrites)} graph rewrite(s)" if fixer.restructured(rec) else ""
        say(f"gradaudit: applied {rec.change} ({rec.finding}) on {len(rec.edits)} tensor(s){rewrites}", err=True)
    for note in result.skipped:
        say(f"gradaudit: skipped {note}", err=True)
    after = result.after
    written = f", wrote {output}" if writes_model else ""
    say(
        f"gradaudit: {result.before.diagnosis.label} -> {after.diagnosis.label}, verdict {after.verdict}{written}",
        err=True,
    )
    raise click.exceptions.Exit(gate.exit_code(after.findings, settings.fail_on))


@cli.command()
@_language_option
def rules(lang: str | None) -> None:
    """List every rule: code, default severity, one line."""
    from gradaudit.i18n import _
    from gradaudit.rules import all_rules

    with use_language(_configured_language(lang)):
        for rule in all_rules():
            click.echo(f"{rule.code}  {rule.severity:<7}  {rule.name}: {_(rule.summary)}")


@cli.command()
@click.argument("code")
@_language_option
def explain(code: str, lang: str | None) -> None:
    """Print the documentation of rule CODE (e.g. GA101) and the remedies that answer it."""
    from gradaudit.remedies import explain_remedies
    from gradaudit.rules import explain as explain_rule

    with use_language(_configured_language(lang)):
        try:
            text = explain_rule(code.upper())
        except KeyError:
            raise InputError(f"unknown rule code {code!r} (see `gradaudit rules`)") from None
        remedies = explain_remedies(code.upper())
    click.echo(f"{text}\n{remedies}" if remedies else text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        with library_output_captured(debug):
            returned = cli.main(args=args, prog_name="gradaudit", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.exceptions.Abort:
        click.echo("gradaudit: aborted", err=True)
        return gate.EXIT_INPUT_ERROR
    except click.ClickException as problem:  # its message may quote an argument: cleaned like every line
        shown = io.StringIO()
        problem.show(file=shown)
        say(shown.getvalue(), err=True, multiline=True, nl=False)
        return gate.EXIT_INPUT_ERROR
    except GradauditError as problem:
        if debug:
            say(traceback.format_exc(), err=True, multiline=True, nl=False)
        click.echo(f"gradaudit: error: {_one_line(problem)}", err=True)
        return problem.exit_code
    except Exception as problem:  # anything unforeseen is an internal error, exit 3
        if debug:
            say(traceback.format_exc(), err=True, multiline=True, nl=False)
        click.echo(f"gradaudit: internal error: {type(problem).__name__}: {_one_line(problem)}"
                   " (run with --debug for the traceback)", err=True)
        return gate.EXIT_INTERNAL_ERROR
    # without standalone mode, click returns the code of a command that raised Exit
    return returned if isinstance(returned, int) else gate.EXIT_PASS


def _one_line(problem: BaseException) -> str:
    """The first line of an error, without escape sequences: messages quote model-supplied names."""
    from gradaudit.report.common import clean

    text = str(problem).strip().splitlines()
    return clean(text[0]) if text else type(problem).__name__


def entry_point() -> None:
    """The `gradaudit` command: `main` under the supervisor that enforces --timeout and --max-memory."""
    from gradaudit.hard_limits import run_supervised

    sys.exit(run_supervised(main))
