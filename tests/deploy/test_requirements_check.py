"""A site runs an app only when its environment already has what the app declares: in
``requirements.txt`` (the seed's route) or in ``pyproject.toml``'s ``[project] dependencies``
(a Flower app's), extras included. Nothing is installed at run time."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsilo.deploy.errors import ValidationError
from fedsilo.deploy.job_process import check_requirements


def _app(root: Path, dependencies: list[str], requirements: str | None = None) -> Path:
    root.mkdir()
    listed = ", ".join(f'"{d}"' for d in dependencies)
    (root / "pyproject.toml").write_text(f'[project]\nname = "app"\ndependencies = [{listed}]\n')
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    return root


def test_what_the_site_has_passes(tmp_path: Path) -> None:
    # The shipped XGBoost apps' declarations; the test environment has the xgboost extra.
    check_requirements(_app(tmp_path / "app", ["fedsilo[xgboost]", "scikit-learn", "numpy>=1"],
                            "numpy\n# a comment\n\n"))
    check_requirements(tmp_path)  # nothing declared: nothing to check


@pytest.mark.parametrize(("dependencies", "requirements", "message"), [
    (["no-such-package-fedsilo"], None,
     "pyproject.toml asks for no-such-package-fedsilo, which the site does not have installed"),
    (["numpy<1"], None, "pyproject.toml asks for numpy<1; the site has numpy "),
    # hypothesis is installed, the django its extra needs is not.
    (["hypothesis[django]"], None,
     "pyproject.toml (hypothesis[django]) asks for django>=5.2"),
    ([], "numpy\nno-such-package-fedsilo==1.0\n",
     "requirements.txt asks for no-such-package-fedsilo==1.0"),
    (["not a requirement !"], None, "pyproject.toml: "),
])
def test_what_the_site_lacks_is_named(tmp_path: Path, dependencies: list[str],
                                      requirements: str | None, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_requirements(_app(tmp_path / "app", dependencies, requirements))
    assert str(caught.value).startswith(message), str(caught.value)
