"""The `slim` command line (typer). The only module that prints results or exits.

Exit codes: 0 ok · 1 a gate or verification failed · 2 usage error · 3 any other SlimError.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from slim import __version__
from slim.errors import SlimError, UsageError

if TYPE_CHECKING:
    from slim.pipeline import LoadedImage
    from slim.result import AnalysisResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Make container images small without breaking them; every kept file knows why.",
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def fail(exc: SlimError) -> NoReturn:
    """Print one line naming the object, exit 2 for usage errors, 3 otherwise."""
    if _state["debug"]:
        raise exc
    typer.echo(f"slim: error: {exc}", err=True)
    raise typer.Exit(2 if isinstance(exc, UsageError) else 3)


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Show decisions (-vv: debug)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"slim {__version__}")
        raise typer.Exit(0)
    _state["debug"] = debug
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# -- analyze ---------------------------------------------------------------------------------
def _load_with_progress(reference: str) -> LoadedImage:
    """Open and read `reference`; a rich progress bar on stderr only when stderr is a terminal."""
    from slim.pipeline import load
    from slim.sources import open_image

    image = open_image(reference)
    if not sys.stderr.isatty():
        return load(reference, image=image)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    total = image.total_blob_bytes or None  # rootfs: and daemon sources may not know it
    with Progress(
        TextColumn("reading layers"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as progress:
        task = progress.add_task("read", total=total)
        return load(reference, on_bytes=lambda n: progress.advance(task, n), image=image)


def _write_reports(result: AnalysisResult, formats: list[str], output: str | None) -> None:
    """Render `result` in each format: to stdout, to the file `output` (one format), or as
    `output`/report.<ext> (several formats, or `output` is a directory). Files are written whole
    into a temp file beside the target, then renamed into place."""
    import io
    import os
    import tempfile

    from slim.emitters import EMITTERS
    from slim.errors import EmitError

    emitters = [EMITTERS[f] for f in formats]
    if output is None:
        for emitter in emitters:
            emitter.emit(result, sys.stdout, color=emitter.name == "text" and sys.stdout.isatty())
        return
    if len(emitters) == 1 and not os.path.isdir(output):
        targets = [(emitters[0], output)]
    else:
        try:
            os.makedirs(output, exist_ok=True)
        except OSError as exc:
            raise EmitError(f"{output}: cannot create the report directory: {exc.strerror}") from None
        targets = [(e, os.path.join(output, f"report.{e.extension}")) for e in emitters]
    for emitter, path in targets:
        buf = io.StringIO()
        emitter.emit(result, buf, color=False)
        directory = os.path.dirname(os.path.abspath(path))
        tmp = ""
        try:
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".slim-report-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(buf.getvalue())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is an ordinary file
            os.replace(tmp, path)
        except OSError as exc:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
            raise EmitError(f"{path}: cannot write the {emitter.name} report: {exc.strerror}") from None


def _analyze_report(image: str, formats: list[str], output: str | None) -> None:
    """Load, summarize and render. The static closure and tracing extend the result here."""
    from slim.emitters import EMITTERS
    from slim.summary import summarize

    unknown = [f for f in formats if f not in EMITTERS]
    if unknown:
        raise UsageError(f"--format {unknown[0]}: unknown format (choose from {', '.join(sorted(EMITTERS))})")
    with _load_with_progress(image) as loaded:
        result = summarize(loaded)
    _write_reports(result, list(dict.fromkeys(formats)), output)


@app.command()
def analyze(
    image: Annotated[str, typer.Argument(help="Image reference: docker-archive:FILE, oci:DIR[:TAG], rootfs:DIR, NAME[:TAG] …")],
    formats: Annotated[list[str] | None, typer.Option("--format", "-f", help="text or json (default text); repeat for several.")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write here (a directory when several formats).")] = None,
) -> None:
    """Report size, layers, efficiency, largest paths and likely waste of an image."""
    try:
        _analyze_report(image, formats or ["text"], output)
    except SlimError as exc:
        fail(exc)


# -- diff, check, hook (workflow: issue 8) ---------------------------------------------------
@app.command("diff")
def diff_cmd(
    base: Annotated[str, typer.Argument(help="The image before the change.")],
    head: Annotated[str, typer.Argument(help="The image after the change.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, markdown or json.")] = "text",
) -> None:
    """Bytes added and removed per layer, package and directory between two images."""
    from slim.diff import RENDERERS, diff_images

    try:
        if fmt not in RENDERERS:
            raise UsageError(f"--format {fmt}: unknown format (choose from {', '.join(sorted(RENDERERS))})")
        result = diff_images(base, head)
    except SlimError as exc:
        fail(exc)
    sys.stdout.write(RENDERERS[fmt](result))


def _check(image: str | None, config_file: str | None, use_cache: bool) -> int:
    """Evaluate the budget; print the verdicts; return the exit code (1 when a gate failed)."""
    import time
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from slim.budget import (
        BudgetConfig,
        evaluate,
        failed,
        find_config,
        read_config,
        resolve_reference,
    )
    from slim.check_cache import check_image

    started = time.monotonic()
    path = Path(config_file) if config_file else find_config()
    config = read_config(path) if path is not None else BudgetConfig()
    base_dir = path.resolve().parent if path is not None else Path.cwd()
    reference = image or (resolve_reference(config.image, base_dir) if config.image else None)
    if reference is None:
        where = f"{path}: image" if path is not None else "no .slim.toml or [tool.slim] found"
        raise UsageError(f"{where}: no image to check (give IMAGE or set `image` in the configuration)")
    checked = check_image(reference, config, use_cache=use_cache)
    base_result = None
    if config.base and (config.max_growth_bytes is not None or config.max_growth_percent is not None):
        base_result = check_image(resolve_reference(config.base, base_dir), config, use_cache=use_cache).result
    verdicts = evaluate(checked.result, config, base_result, forbidden_paths=checked.forbidden_paths)
    console = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)
    elapsed = time.monotonic() - started
    console.print(Text(f"slim check: {reference} ({'cached' if checked.cached else 'analyzed'} in {elapsed:.2f} s; "
                       f"config {path or '-'})"), soft_wrap=True)
    if not verdicts:
        console.print("no gates configured (see docs/ci.md for the .slim.toml keys)")
        return 0
    table = Table(title="Budget", title_justify="left")
    for col in ("gate", "status", "measured", "threshold", "detail"):
        table.add_column(col, overflow="fold")
    for v in verdicts:
        style = {"pass": "green", "warn": "yellow", "fail": "bold red"}.get(v.status, "")
        table.add_row(Text(v.rule), Text(v.status, style=style), Text(v.measured), Text(v.threshold), Text(v.message))
    console.print(table)
    counts = {s: sum(1 for v in verdicts if v.status == s) for s in ("pass", "warn", "fail")}
    console.print(f"{counts['pass']} passed, {counts['warn']} warned, {counts['fail']} failed")
    return 1 if failed(verdicts) else 0


@app.command()
def check(
    image: Annotated[str | None, typer.Argument(help="Image reference (default: `image` of the configuration).")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Budget file (default: nearest .slim.toml or pyproject.toml [tool.slim]).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Analyze again even when the image is unchanged.")] = False,
) -> None:
    """Evaluate the budget gates (size, removable %, efficiency, growth, forbidden paths and packages); exit 1 on a failure."""
    try:
        code = _check(image, config, use_cache=not no_cache)
    except SlimError as exc:
        fail(exc)
    raise typer.Exit(code)


hook_app = typer.Typer(help="Git hooks that run `slim check`.", no_args_is_help=True)
app.add_typer(hook_app, name="hook")


@hook_app.command("install")
def hook_install(
    force: Annotated[bool, typer.Option("--force", help="Replace a pre-push hook slim did not write.")] = False,
) -> None:
    """Write .git/hooks/pre-push: `slim check` runs before every push and a failed gate stops it."""
    from slim.hook import install_hook

    try:
        path = install_hook(force=force)
    except SlimError as exc:
        fail(exc)
    typer.echo(f"slim: pre-push hook written to {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
