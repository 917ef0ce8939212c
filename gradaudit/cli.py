"""Command line: `gradaudit check MODEL`, `gradaudit rules`, `gradaudit explain CODE`.

`main(argv) -> int` is the single entry point (tests call it directly); exit codes follow
DESIGN.md: 0 pass, 1 gate failed, 2 usage or input error, 3 internal error. Heavy imports (torch)
happen inside the commands so `--help` and `rules` stay fast.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path
from typing import Sequence

import click

from gradaudit import __version__, gate
from gradaudit.errors import GradauditError, InputError


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of integers (e.g. 8,3,32,32)")
    if not dims or any(d <= 0 for d in dims):
        raise click.BadParameter(f"{text!r}: every dimension must be a positive integer")
    return dims


def _shapes_callback(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[int, ...]] | None:
    return [_parse_shape(v) for v in values] or None


def _use_color(stream) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def _check_output_paths(source: str, outputs: dict[str, str | None]) -> None:
    """Refuse, before any work, an output that is a directory, lacks a folder, or is the model."""
    model = Path(source).resolve() if Path(source).exists() else None
    for flag, value in outputs.items():
        if not value:
            continue
        path = Path(value)
        if path.is_dir():
            raise InputError(f"{flag} {value}: is a directory")
        if not path.parent.resolve().is_dir():
            raise InputError(f"{flag} {value}: folder {path.parent} does not exist")
        if model is not None and path.resolve() == model:
            raise InputError(f"{flag} {value}: refusing to overwrite the input model")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradaudit")
def cli() -> None:
    """Audit a neural network for exploding and vanishing gradients before training it."""


@cli.command()
@click.argument("source")
@click.option("--input-shape", "input_shapes", multiple=True, callback=_shapes_callback,
              help="Shape of one model input, batch first (e.g. 8,3,32,32); repeat for several inputs.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1),
              help="Batch size for symbolic batch dimensions of ONNX inputs.")
@click.option("--fail-on", type=click.Choice(gate.FAIL_ON_CHOICES), default="error", show_default=True,
              help="Lowest finding severity that fails the gate (exit 1).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html", "sarif", "junit"]), default="text",
              show_default=True, help="Report printed on stdout.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the JSON report here.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Also write the HTML report here.")
@click.option("--sarif", "sarif_path", type=click.Path(dir_okay=False), help="Also write a SARIF 2.1.0 report here.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="Also write a JUnit XML report here.")
@click.option("--passes", default=3, show_default=True, type=click.IntRange(1, 100),
              help="Real forward+backward passes of the dynamic probe.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the synthetic batches and the default loss.")
@click.option("--static-only", is_flag=True, help="Skip the dynamic probe (no forward or backward pass).")
@click.option("--sharpness", is_flag=True, help="Also estimate the loss sharpness (largest Hessian eigenvalue).")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=1.0),
              help="Seconds the probe may spend before it stops after the current pass.")
@click.option("--trust", is_flag=True, help="Allow loading pickled whole modules (.pt/.pth): pickle runs code.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict line.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def check(source: str, input_shapes, batch, fail_on, fmt, json_path, html_path, sarif_path, junit_path,
          passes, seed, static_only, sharpness, timeout, trust, quiet, debug) -> None:
    """Audit SOURCE: an .onnx file, a .pt2 / TorchScript file, or a `module:factory` spec."""
    from gradaudit.audit import AuditOptions, run_audit
    from gradaudit.loaders import load
    from gradaudit.report import Format, render, write_atomic

    files = {"--json": json_path, "--html": html_path, "--sarif": sarif_path, "--junit": junit_path}
    _check_output_paths(source, files)
    started = time.perf_counter()
    handle = load(source, input_shapes, trust=trust, batch=batch)
    options = AuditOptions(passes=passes, seed=seed, static_only=static_only, sharpness=sharpness, timeout=timeout)
    options.timing["load_s"] = time.perf_counter() - started
    result = run_audit(handle, options)

    formats = {"--json": Format.JSON, "--html": Format.HTML, "--sarif": Format.SARIF, "--junit": Format.JUNIT}
    rendered = {flag: render(result, formats[flag]) for flag, path in files.items() if path}
    for flag, text in rendered.items():
        write_atomic(files[flag], text)
    code = gate.exit_code(result.findings, fail_on)
    if quiet:
        click.echo(f"{result.verdict}: {result.diagnosis.label} ({source})")
    elif fmt == "text":
        click.echo(render(result, Format.TEXT, color=_use_color(sys.stdout)), nl=False)
    else:
        click.echo(render(result, Format(fmt)), nl=False)
    raise click.exceptions.Exit(code)


@cli.command()
def rules() -> None:
    """List every rule: code, default severity, one line."""
    from gradaudit.rules import all_rules

    for rule in all_rules():
        click.echo(f"{rule.code}  {rule.severity:<7}  {rule.name}: {rule.summary}")


@cli.command()
@click.argument("code")
def explain(code: str) -> None:
    """Print the documentation of rule CODE (e.g. GA101)."""
    from gradaudit.rules import explain as explain_rule

    try:
        text = explain_rule(code.upper())
    except KeyError:
        raise InputError(f"unknown rule code {code!r} (see `gradaudit rules`)")
    click.echo(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code instead of exiting."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="gradaudit", standalone_mode=False)
    except click.exceptions.Exit as stop:
        return stop.exit_code
    except click.exceptions.Abort:
        click.echo("gradaudit: aborted", err=True)
        return gate.EXIT_INPUT_ERROR
    except click.ClickException as problem:
        problem.show()
        return gate.EXIT_INPUT_ERROR
    except GradauditError as problem:
        if debug:
            traceback.print_exc()
        click.echo(f"gradaudit: error: {_one_line(problem)}", err=True)
        return problem.exit_code
    except Exception as problem:  # anything unforeseen is an internal error, exit 3
        if debug:
            traceback.print_exc()
        click.echo(f"gradaudit: internal error: {type(problem).__name__}: {_one_line(problem)}"
                   " (run with --debug for the traceback)", err=True)
        return gate.EXIT_INTERNAL_ERROR
    return gate.EXIT_PASS


def _one_line(problem: BaseException) -> str:
    text = str(problem).strip().splitlines()
    return text[0] if text else type(problem).__name__


def entry_point() -> None:
    sys.exit(main())
