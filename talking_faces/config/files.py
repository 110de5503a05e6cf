"""Where the YAML files that commands look up are found: a path given, else the package's copy.

Every preset, protocol, sweep file, compare config and the paper-reported numbers ship inside the
package (``talking_faces/experiments/``, package data found through :mod:`importlib.resources`),
so an installed package finds them from any folder. A source checkout also has ``experiments/`` at
its top (a link to the same folder). A path that exists is always used as given, so a user's own
copy in the working folder overrides the packaged one.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

#: the folder name under which the packaged YAML files are addressed (``experiments/...``)
EXPERIMENTS = "experiments"


def packaged_dir() -> Path:
    """The package's ``experiments/`` folder (on disk: the package is installed unzipped)."""
    return Path(str(files("talking_faces") / EXPERIMENTS))


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if it exists; else, for a relative ``experiments/...`` path, the packaged file of
    that name when there is one; else ``path`` unchanged (the caller reports it missing)."""
    given = Path(path)
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts
    if parts and parts[0] == EXPERIMENTS:
        candidate = packaged_dir().joinpath(*parts[1:])
        if candidate.exists():
            return candidate
    return given


def named_file(folder: str, name: str) -> tuple[Path, list[str]]:
    """The YAML file for ``name`` under ``experiments/<folder>/``: a path to a ``.yaml`` file as
    given, else ``experiments/<folder>/<name>.yaml`` in the working folder, else the packaged one.

    Returns ``(path, known)``: the path found (or the working-folder candidate when none exists)
    and the names known in both places, for an error message.
    """
    given = Path(name)
    if given.suffix in (".yaml", ".yml") and given.is_file():
        return given, []
    local = Path(EXPERIMENTS) / folder / f"{name}.yaml"
    packaged = packaged_dir() / folder / f"{name}.yaml"
    for candidate in (local, packaged):
        if candidate.is_file():
            return candidate, []
    known = sorted(
        {p.stem for d in (local.parent, packaged.parent) if d.is_dir() for p in d.glob("*.yaml")}
    )
    return local, known
