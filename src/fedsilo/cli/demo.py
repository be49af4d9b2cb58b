"""``fedsilo demo``: a federation end to end on this machine (the fraud app by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedsilo.cli._output import INTERRUPTED, absolute, fail, make_console, setup_logging
from fedsilo.cli.federate import report_job_error
from fedsilo.deploy.errors import JobError

APPS = ("fraud", "fraud-xgb", "mlp")


def demo(
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Directory for model.joblib, history.json and metrics.png.")
    ] = Path("fedsilo-demo"),
    rounds: Annotated[int, typer.Option(min=1, help="Federated rounds.")] = 5,
    sites: Annotated[int, typer.Option(min=2, max=10, help="Sites, one process each.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the data and the partitions.")] = 0,
    providers: Annotated[int, typer.Option(
        min=500, help="Providers to draw (without --data).")] = 5400,
    data: Annotated[Path | None, typer.Option(
        "--data", help="A provider table (CSV) or a directory holding the four raw claims "
        "files (labels, beneficiaries, inpatient, outpatient) to run on instead of drawn "
        "data; see docs/fraud.md.")] = None,
    app: Annotated[str, typer.Option(
        help="The app: fraud (logistic regression, with the comparison report), fraud-xgb "
             "(XGBoost bagging on the same sites, compared the same way) or mlp (a numpy "
             "MLP).")] = "fraud",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the server log.")] = False,
) -> None:
    """Federate a fraud model over sites that keep their data; compare it with the alternatives."""
    if app not in APPS:
        fail(f"--app must be {', '.join(APPS[:-1])} or {APPS[-1]}, got {app!r}", code=2)
    if app == "mlp" and data is not None:
        fail("--data is for the fraud apps; the mlp app draws its own data", code=2)
    if app == "fraud-xgb":
        try:
            import xgboost  # noqa: F401
        except ImportError:
            fail("the fraud-xgb app needs XGBoost, which this install lacks: "
                 "pip install \"fedsilo[xgboost]\"")
    setup_logging(verbose)
    console = make_console()
    try:
        if app == "mlp":
            from fedsilo.examples.mlp.demo import run_demo as run_mlp_demo

            run_mlp_demo(absolute(output), rounds=rounds, n_sites=sites, seed=seed,
                         console=console)
            return
        if app == "fraud-xgb":
            from fedsilo.examples.fraud_xgb.demo import run_demo as run_xgb_demo

            run_xgb_demo(absolute(output), rounds=rounds, n_sites=sites, seed=seed,
                         n_providers=providers, console=console,
                         data=absolute(data) if data is not None else None)
            return
        from fedsilo.examples.fraud.demo import run_demo

        run_demo(absolute(output), rounds=rounds, n_sites=sites, seed=seed, n_providers=providers,
                 console=console, data=absolute(data) if data is not None else None)
    except KeyboardInterrupt as exc:
        console.print("interrupted: the site agents and their jobs were stopped", highlight=False)
        raise typer.Exit(code=INTERRUPTED) from exc
    except JobError as exc:
        report_job_error(console, exc)
        fail(f"site {exc.site} failed: job {exc.job} {exc.job_status}")
    except Exception as exc:
        fail(f"demo failed: {exc}")
