"""``fedsilo fraud-data``: the fraud example's data, laid out as sites' channels and a test set.

For trying the deployment flow of docs/deployment.md by hand: each site's directory becomes a
channel (``fedsilo site add-channel``), and ``server/`` holds the server's test set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedsilo.cli._output import absolute, fail


def fraud_data(
    directory: Annotated[Path, typer.Argument(help="Where to write site1/, site2/, ... and "
                                                   "server/test.csv; must not exist yet.")],
    sites: Annotated[int, typer.Option(min=1, max=20, help="Sites to split the data into.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the data and the partitions.")] = 0,
    providers: Annotated[int, typer.Option(min=500, help="Providers in the data.")] = 5400,
) -> None:
    """Write synthetic Medicare-provider data as one channel per site and a server test set."""
    from fedsilo.examples.fraud.data import generate_providers
    from fedsilo.examples.fraud.prepare import (
        prepare_federation,
        write_site_channel,
        write_test_set,
    )

    directory = absolute(directory)
    if directory.exists():
        fail(f"{directory} exists already; name a new directory")
    split = prepare_federation(generate_providers(providers, seed), n_sites=sites, seed=seed)
    staging = directory.with_name(f".{directory.name}.partial")
    for site in split.sites:
        write_site_channel(site, staging / site.name)
    write_test_set(split, staging / "server")
    staging.rename(directory)
    for site in split.sites:
        typer.echo(f"{directory / site.name}: {len(site.y_train)} training rows, "
                   f"{len(site.y_val)} validation rows")
    typer.echo(f"{directory / 'server' / 'test.csv'}: {len(split.y_test)} test rows")
