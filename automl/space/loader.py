"""Load a search space from YAML: a file path or the name of a shipped space."""

from __future__ import annotations

from pathlib import Path

import yaml

from .space import SearchSpace, SpaceError

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "search_spaces"


def shipped_spaces() -> dict[str, Path]:
    """Name -> file of every space in `search_spaces/`."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.yaml"))}


def resolve_space_path(spec: str | Path) -> Path:
    """A path to a YAML file, or the name of a shipped space (`image_cnn`)."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_spaces()
    if str(spec) in shipped:
        return shipped[str(spec)]
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        raise SpaceError([("", "file not found")], str(spec))
    raise SpaceError([("", f"no such file or shipped space (shipped: {', '.join(shipped) or 'none'})")], str(spec))


def load_space(spec: str | Path | SearchSpace) -> SearchSpace:
    """Parse and validate a space; every problem names the file and the key path."""
    if isinstance(spec, SearchSpace):
        return spec
    path = resolve_space_path(spec)
    try:
        raw = yaml.safe_load(path.read_text())  # data only: no tags that run code
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpaceError([(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")], str(path)) from None
    except OSError as exc:
        raise SpaceError([("", f"cannot read: {exc.strerror}")], str(path)) from None
    if raw is None:
        raise SpaceError([("", "the file is empty")], str(path))
    space = SearchSpace.from_dict(raw, source=str(path))
    if space.name == "custom":
        space.name = path.stem
    return space


def load_configurations(path: str | Path) -> list[dict]:
    """Configurations to try first (`--enqueue`), from YAML or JSON: a list of {flat_name: value} mappings."""
    try:
        items = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpaceError([("", f"cannot read configurations to enqueue: {exc}")], str(path)) from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise SpaceError([("", "must hold a list of mappings of parameter names to values")], str(path))
    return items
