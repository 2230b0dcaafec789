"""Benchmark grids: a suite file expanded into cells (scenarios), all validated before any runs (``secfl.experiments.bench``).

A suite is a TOML file::

    name = "robustness-smoke"            # optional (default: the file name without .toml)
    base = "../scenarios/base.toml"      # optional: a scenario file, relative to the suite file
    skip_incompatible = true             # optional: cells whose components cannot work together (e.g.
                                         # trimmed_mean over one secure-sum group) are "n/a", not errors
    baseline = true                      # optional (default true): an `attack` axis without {} gets {} (no
                                         # attack) first, so every attack is measured against its baseline
    [scenario]                           # optional: scenario keys merged over `base`
    run = { rounds = 3, seed = 0 }
    data = { dataset = "digits", num_clients = 12 }
    stages = [{ kind = "l2clip", norm = 2.0 }, { kind = "quantize", scale = 65536.0 }]

    [grid]                               # every combination; keys are dotted scenario paths
    aggregator = [{ kind = "mean" }, { kind = "trimmed_mean", num_byzantine = "$f" }]
    "data.partition" = [{ kind = "iid" }, { kind = "dirichlet", alpha = 0.5 }]
    attack = [{}, { kind = "alie", num_byzantine = "$f" }]  # {} unsets the key: the default (no attack)
    "$f" = [1, 2]                        # a variable: "$f" anywhere in the cell's scenario becomes 1, 2
    "run.seed" = [0, 1]

    [zip.grouping]                       # optional: one axis whose keys change together (equal lengths)
    names = ["plaintext", "buckets-4", "secure-sum"]         # optional value names (ids, report)
    grouping = [{ kind = "individual" }, { kind = "buckets", size = 4 }, { kind = "one_group" }]
    protocol = [{ kind = "plaintext" }, { kind = "secagg" }, { kind = "secagg" }]

    [[cells]]                            # optional: extra cells outside the grid (base + these keys)
    aggregator = { kind = "krum", num_byzantine = 1 }
    "run.seed" = 0

    [labels]                             # optional: the axes of the report's heatmap
    defense = ["aggregator", "grouping"]  # data.partition: a setting (one heatmap each)
    attack = ["attack"]

Rules. A grid value replaces the key at its path whole (a table is not merged into the base's table);
``{}`` removes the key so the scenario default applies. Axes vary in file order, the last fastest, and
are applied in that order (so ``"attack.num_byzantine" = [1, 2]`` after ``attack`` sets f inside each
attack). A key starting with ``$`` is a variable, not a scenario key: each string ``"$name"`` in the
cell's scenario becomes its value (so attack and aggregator share one f, as above). Each ``[zip.NAME]``
table is one more axis, NAME, after the grid's: its i-th value sets the i-th value of every key in the
table. Dotted keys may be written quoted (``"run.seed"``) or as nested tables (``run.seed``). In
``[scenario]`` and ``[[cells]]`` nested tables are merged key by key, except component tables (those
with a ``kind``), which replace. Without ``[labels]``, axes whose name contains "attack" are attack
axes and every other axis except ``run.seed`` is a defense axis; with labels, axes in neither list are
settings, and the report draws one heatmap per setting.

Each cell has a readable, filesystem-safe id (``aggregator=trimmed_mean-1,data.partition=dirichlet-0.5``,
cut and suffixed with a hash when long) and the run directory ``OUT/cells/<id>/``. ``OUT/suite.json``
lists the cells (id, overrides, axis labels, status, error). Every cell is validated before any runs.
A cell is finished when its summary is written and all its rounds are; ``resume`` skips finished cells
and resumes the others from their checkpoints, so a killed grid loses nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secfl import scenario
from secfl.exceptions import ConfigurationError, IncompatibleStagesError

SEED_AXIS = "run.seed"
MAX_ID = 120  # characters of a cell id (a directory name); longer ids are cut and get a hash
SUITE_KEYS = ("name", "base", "scenario", "grid", "zip", "cells", "labels", "skip_incompatible", "baseline")


@dataclass(frozen=True)
class Suite:
    """A parsed suite file: base scenario mapping, grid axes, extra cells and heatmap labels."""

    name: str
    path: Path | None
    base: dict[str, Any]
    grid: list[tuple[str, list[Any]]]
    extra: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, list[str]] | None = None
    skip_incompatible: bool = False  # cells whose components cannot work together are "n/a", not errors

    @property
    def axes(self) -> list[str]:
        """Grid keys in file order, then keys that only extra cells set."""
        keys = [key for key, _ in self.grid]
        for cell in self.extra:
            keys += [k for k in cell if k not in keys]
        return keys


@dataclass(frozen=True)
class Joint:
    """One value of a ``[zip.NAME]`` axis: several dotted keys set together, under one name."""

    name: str
    values: dict[str, Any]


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its id, overrides (dotted key -> value), scenario mapping and axis labels."""

    id: str
    overrides: dict[str, Any]
    data: dict[str, Any]
    values: dict[str, str]


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite TOML file (not its cells: see ``expand`` and ``validate_cells``).

    Raises:
        ConfigurationError: unreadable file, bad TOML, an unknown key or a malformed grid.
    """
    path = Path(path)
    return parse_suite(_read_toml(path, "suite"), path=path)


def parse_suite(data: Mapping[str, Any], *, path: Path | None = None) -> Suite:
    """Check a suite mapping read from ``path`` (``base`` is relative to its folder)."""
    source, root = (str(path), path.parent) if path is not None else ("suite", Path("."))
    unknown = [k for k in data if k not in SUITE_KEYS]
    if unknown:
        raise ConfigurationError(f"{source}: unknown key {unknown[0]!r}; a suite has {list(SUITE_KEYS)}")
    base: dict[str, Any] = {}
    if "base" in data:
        if not isinstance(data["base"], str):
            raise ConfigurationError(f"{source}: base must be a path to a scenario file (got {data['base']!r})")
        base = _read_toml(root / data["base"], "base scenario")
    inline = data.get("scenario", {})
    if not isinstance(inline, dict):
        raise ConfigurationError(f"{source}: [scenario] must be a table of scenario keys")
    base = _merge(base, inline)

    grid = data.get("grid", {})
    if not isinstance(grid, dict):
        raise ConfigurationError(f"{source}: [grid] must be a table of dotted key = [values]")
    axes: list[tuple[str, list[Any]]] = []
    _flatten_grid(grid, "", axes, source, "grid")
    zips = data.get("zip", {})
    if not isinstance(zips, dict) or not all(isinstance(t, dict) for t in zips.values()):
        raise ConfigurationError(f"{source}: zip must be [zip.NAME] tables of dotted key = [values]")
    axes += [(name, _joint(name, table, source)) for name, table in zips.items()]
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise ConfigurationError(f"{source}: axis {next(k for k in keys if keys.count(k) > 1)!r} given twice")

    cells = data.get("cells", [])
    if not isinstance(cells, list) or not all(isinstance(c, dict) and c for c in cells):
        raise ConfigurationError(f"{source}: cells must be [[cells]] tables of dotted key = value")
    extra = [dict(_flatten_cell(c, "")) for c in cells]

    name = data.get("name", path.stem if path is not None else "suite")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"{source}: name must be a non-empty string (got {name!r})")
    suite = Suite(name=name, path=path, base=base, grid=axes, extra=extra)
    labels = data.get("labels")
    if labels is not None:
        if not isinstance(labels, dict) or any(k not in ("defense", "attack") for k in labels):
            raise ConfigurationError(f"{source}: [labels] takes defense = [axes] and attack = [axes]")
        for role, names in labels.items():
            if not isinstance(names, list) or any(n not in suite.axes for n in names):
                raise ConfigurationError(f"{source}: labels.{role} = {names!r}: each must be one of the axes "
                                         f"{suite.axes}")
        labels = {"defense": list(labels.get("defense", [])), "attack": list(labels.get("attack", []))}
    skip, baseline = data.get("skip_incompatible", False), data.get("baseline", True)
    if not isinstance(skip, bool):
        raise ConfigurationError(f"{source}: skip_incompatible must be true or false (got {skip!r})")
    if not isinstance(baseline, bool):
        raise ConfigurationError(f"{source}: baseline must be true or false (got {baseline!r})")
    if baseline:  # every attack grid gets its no-attack row: what the attacks cost is measured against it
        axes = [(k, [{}, *v] if k == "attack" and {} not in v else v) for k, v in axes]
    return Suite(name=name, path=path, base=base, grid=axes, extra=extra, labels=labels, skip_incompatible=skip)


def roles(suite: Suite) -> dict[str, list[str]]:
    """The heatmap axes: ``[labels]`` if given, else keys containing "attack" vs the rest (minus the seed)."""
    if suite.labels is not None:
        return {"defense": list(suite.labels["defense"]), "attack": list(suite.labels["attack"])}
    axes = [a for a in suite.axes if a != SEED_AXIS]
    return {"defense": [a for a in axes if "attack" not in a], "attack": [a for a in axes if "attack" in a]}


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None


def _flatten_grid(table: dict[str, Any], prefix: str, out: list[tuple[str, list[Any]]], source: str,
                  where: str) -> None:
    for key, value in table.items():
        if isinstance(value, list):
            if not value:
                raise ConfigurationError(f"{source}: {where}.{prefix}{key} is empty; give at least one value")
            out.append((prefix + key, value))
        elif isinstance(value, dict) and value and "kind" not in value:
            _flatten_grid(value, f"{prefix}{key}.", out, source, where)
        else:
            raise ConfigurationError(f"{source}: {where}.{prefix}{key} must be a list of values (got {value!r}); "
                                     f"write {prefix}{key} = [{_toml(value)}] for a single value")


def _joint(name: str, table: dict[str, Any], source: str) -> list[Joint]:
    """The values of axis ``[zip.NAME]``: the i-th of every key together, named ``names[i]`` or by their labels."""
    names = table.get("names")
    keys: list[tuple[str, list[Any]]] = []
    _flatten_grid({k: v for k, v in table.items() if k != "names"}, "", keys, source, f"zip.{name}")
    lengths = {len(v) for _, v in keys} | ({len(names)} if isinstance(names, list) else set())
    if not keys or len(lengths) != 1:
        raise ConfigurationError(f"{source}: zip.{name} needs lists of one length (got "
                                 f"{', '.join(f'{k}: {len(v)}' for k, v in keys) or 'no keys'}"
                                 f"{f', names: {len(names)}' if isinstance(names, list) else ''})")
    if names is not None and (not isinstance(names, list) or len({str(n) for n in names}) != len(names)):
        raise ConfigurationError(f"{source}: zip.{name}.names must be a list of distinct names")
    return [Joint(str(names[i]) if names else "+".join(label(v[i]) for _, v in keys), {k: v[i] for k, v in keys})
            for i in range(lengths.pop())]


def _flatten_cell(table: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict) and value and "kind" not in value:
            items += _flatten_cell(value, f"{prefix}{key}.")
        else:
            items.append((prefix + key, value))
    return items


def _toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, dict) else "{ ... }"


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: plain tables merge key by key; component tables (with a kind) replace."""
    out = json.loads(json.dumps(base, default=str))
    for key, value in top.items():
        if isinstance(value, dict) and "kind" not in value and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = json.loads(json.dumps(value, default=str))
    return out


# ---------------------------------------------------------------- cells


def expand(suite: Suite) -> list[Cell]:
    """Every cell: the grid's product (last axis fastest), then the extra cells; ids are unique."""
    combos = [dict(zip([k for k, _ in suite.grid], values))
              for values in itertools.product(*[v for _, v in suite.grid])] if suite.grid else []
    if not combos and not suite.extra:
        combos = [{}]
    overrides = combos + suite.extra
    readable = [cell_id(o) for o in overrides]
    ids = [f"{text[:MAX_ID - 9]}~{digest(over)}" if readable.count(text) > 1 else text  # labels can collide
           for text, over in zip(readable, overrides)]
    if len(set(ids)) != len(ids):
        twice = readable[ids.index(next(i for i in ids if ids.count(i) > 1))]
        raise ConfigurationError(f"suite {suite.name!r}: cell {twice} is given twice; remove the duplicate")
    joints = {k for k, v in suite.grid if isinstance(v[0], Joint)}
    cells = []
    for text, over in zip(ids, overrides):
        data = {**suite.base, "name": f"{suite.name}/{text}"}
        variables = {}
        for key, value in over.items():
            for path, item in (value.values.items() if isinstance(value, Joint) else [(key, value)]):
                if path.startswith("$"):
                    variables[path] = item
                else:
                    data = _set(data, path, item, text)
        data = _substitute(data, variables, text)
        values = {axis: label(over[axis]) if axis in over else "base" if axis in joints else label(_get(data, axis))
                  for axis in suite.axes}
        cells.append(Cell(id=text, overrides=dict(over), data=data, values=values))
    return cells


def cell_id(overrides: Mapping[str, Any]) -> str:
    """``key=label,key=label``: readable and filesystem-safe; cut with a hash suffix when too long."""
    if not overrides:
        return "base"
    text = ",".join(f"{k.removeprefix('$')}={label(v)}" for k, v in overrides.items())
    text = re.sub(r"[^A-Za-z0-9._+=,-]", "_", text)
    return text if len(text) <= MAX_ID else f"{text[:MAX_ID - 9]}~{digest(overrides)}"


def label(value: Any) -> str:
    """A short name for a grid value: a table is its kind then its other values (``dirichlet-0.5``)."""
    if isinstance(value, Joint):
        return value.name
    if isinstance(value, dict):
        if not value:
            return "none"
        parts = ([label(value["kind"])] if "kind" in value else []) + [  # "$f": shown by its own axis
            label(v) for k, v in value.items() if k != "kind" and v != {} and not str(v).startswith("$")]
        return "-".join(parts)
    if isinstance(value, list):
        return "+".join(label(v) for v in value) if value else "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def digest(value: Any) -> str:
    """8 hex digits of a value's SHA-256 (canonical JSON): a short, stable suffix for names."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _set(data: dict[str, Any], dotted: str, value: Any, where: str) -> dict[str, Any]:
    """A copy of ``data`` with ``dotted`` set to ``value`` (``{}`` removes the key)."""
    data = _merge(data, {})
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigurationError(f"cell {where}: cannot set {dotted!r}: {part!r} is not a table")
        node = child
    if value == {}:
        node.pop(last, None)
    else:
        node[last] = json.loads(json.dumps(value, default=str))
    return data


def _substitute(value: Any, variables: Mapping[str, Any], where: str) -> Any:
    """Replace every string ``"$name"`` in a scenario mapping by the cell's value of the variable axis."""
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if isinstance(value, str) and value.startswith("$"):
        if value not in variables:
            raise ConfigurationError(f"cell {where}: {value!r} names no variable; add \"{value}\" = [values] to "
                                     f"[grid] (defined: {sorted(variables) or 'none'})")
        return variables[value]
    return value


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return {}  # unset: the scenario default (labelled "none")
        node = node[part]
    return node


def validate_cells(cells: list[Cell], *, source: str = "suite", skip_incompatible: bool = False,
                   ) -> tuple[dict[str, scenario.Scenario], dict[str, str]]:
    """Validate every cell's scenario before anything runs; return (specs, not-applicable cells -> reason).

    With ``skip_incompatible``, a cell whose components cannot work together (IncompatibleStagesError,
    e.g. Krum over one secure-sum group) is not applicable instead of an error; any other mistake is one.

    Raises:
        ConfigurationError: naming the first bad cell (and how many more are bad).
    """
    specs, skipped, bad = {}, {}, []
    for cell in cells:
        try:
            specs[cell.id] = scenario.validate(cell.data, source=f"cell {cell.id}")
        except IncompatibleStagesError as exc:
            if not skip_incompatible:
                bad.append(_named(exc, cell, source))
            else:
                skipped[cell.id] = str(exc)
        except ConfigurationError as exc:
            bad.append(_named(exc, cell, source))
    if bad:
        more = f" (and {len(bad) - 1} more bad cells)" if len(bad) > 1 else ""
        hint = "; or set skip_incompatible = true in the suite" if isinstance(bad[0], IncompatibleStagesError) else ""
        raise type(bad[0])(f"{bad[0]}{more}{hint}")
    return specs, skipped


def _named(exc: ConfigurationError, cell: Cell, source: str) -> ConfigurationError:
    message = str(exc) if str(exc).startswith(f"cell {cell.id}") else f"cell {cell.id}: {exc}"
    return type(exc)(f"{source}: {message}")
