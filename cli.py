"""papersuite's composition root: one Typer app that mounts every package's commands.

This is the only module that knows every paper package. Commands import heavy libraries inside
their bodies, so `papersuite --help` stays under a second.
"""
from __future__ import annotations

import os
import sys
import tempfile
import traceback

import typer

from papersuite import __version__
from papersuite.errors import UserError
from papersuite.errors import click_exceptions as click_exc


class PapersuiteApp(typer.Typer):
    """Typer app whose entry point turns errors into the CLI conventions.

    UserError -> one line on stderr, exit 2. Usage errors -> click's message, exit 2.
    Any other exception -> a short message and the path of a full traceback log, exit 1.
    """

    def __call__(self, *args, **kwargs):
        try:
            rv = super().__call__(*args, standalone_mode=False, **kwargs)
        except UserError as e:
            print(f"papersuite: error: {e}", file=sys.stderr)
            sys.exit(2)
        except typer.Exit as e:
            sys.exit(e.exit_code)
        except click_exc.ClickException as e:  # usage errors: typer's own formatting
            try:
                from typer import rich_utils

                rich_utils.rich_format_error(e)
            except ImportError:  # pragma: no cover
                e.show()
            sys.exit(e.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            print("papersuite: interrupted", file=sys.stderr)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        except Exception as e:  # a bug: keep the traceback, show one line
            fd, log = tempfile.mkstemp(prefix="papersuite-crash-", suffix=".log")
            with os.fdopen(fd, "w") as fh:
                traceback.print_exc(file=fh)
            print(f"papersuite: internal error: {type(e).__name__}: {e} (traceback in {log})", file=sys.stderr)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = PapersuiteApp(name="papersuite", no_args_is_help=True, pretty_exceptions_enable=False,
                    add_completion=False,
                    help="Ten recent ML-systems papers as tested, benchmarked command-line tools.")


def _version(value: bool) -> None:
    if value:
        print(f"papersuite {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed for every random choice."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or tables on stderr."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More detail on stderr."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Global options apply to every command."""
    from papersuite.context import set_options

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown --device {device!r}; choose auto, cpu or cuda")
    set_options(device=device, seed=seed, quiet=quiet, verbose=verbose)


# -- mounted sub-apps ------------------------------------------------------------------------
from papersuite.models_cli import app as models_app  # noqa: E402

app.add_typer(models_app, name="models")

serve_app = typer.Typer(help="LLM serving: the shared engine and the serving papers.", no_args_is_help=True)
train_app = typer.Typer(help="Training-systems papers.", no_args_is_help=True)

# One block per package; each mounts its sub-app once its commands work.
from papersuite.engine.commands import api as serve_api  # noqa: E402

serve_app.command("api")(serve_api)
from glmcot.commands import app as glmcot_app  # noqa: E402

serve_app.add_typer(glmcot_app, name="glm")
__import__("glmcot.policy").policy.register()  # KV policy "graphcot" for serve api
from flashforge.commands import app as flashforge_app  # noqa: E402
from flashforge.registration import register_when_engine_loads  # noqa: E402

serve_app.add_typer(flashforge_app, name="flashforge")
register_when_engine_loads()  # ATTENTION_BACKENDS["flashforge"], added when the engine is imported
from ares.commands import app as ares_app  # noqa: E402
serve_app.add_typer(ares_app, name="ares")
from echo.commands import app as echo_app  # noqa: E402
serve_app.add_typer(echo_app, name="echo")
__import__("echo.registration").registration.register()  # "echo" scheduler + KV policy for serve api
from specmoeoff.commands import app as specmoeoff_app  # noqa: E402
serve_app.add_typer(specmoeoff_app, name="specmoeoff")
from chameleon.commands import app as chameleon_app  # noqa: E402
train_app.add_typer(chameleon_app, name="chameleon")
from odyssey.commands import app as odyssey_app  # noqa: E402

train_app.add_typer(odyssey_app, name="odyssey")
from boasf.commands import tune as boasf_tune  # noqa: E402

app.command("tune")(boasf_tune)
from csgnn.commands import app as csgnn_app  # noqa: E402

app.add_typer(csgnn_app, name="graph-classify")
from hfassess.commands import app as hfassess_app  # noqa: E402
app.add_typer(hfassess_app, name="hf-assess")

# serve/train appear only when something is mounted under them.
if serve_app.registered_commands or serve_app.registered_groups:
    app.add_typer(serve_app, name="serve")
if train_app.registered_commands or train_app.registered_groups:
    app.add_typer(train_app, name="train")

if __name__ == "__main__":
    app()
