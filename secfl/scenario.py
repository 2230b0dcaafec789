"""The TOML scenario schema (pydantic v2): every key known, every misspelling an error that names it.

A scenario has top-level component tables (``stages``, ``protocol``, ``grouping``, ``aggregator``, ``pre``)
and sections ``[run] [data] [model] [client] [server]``. ``--set a.b=value`` overrides any key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dp_accounting
from pydantic import BaseModel, Field, ValidationError, model_validator

from secfl import registry
from secfl.exceptions import ConfigurationError
from secfl.overrides import apply_overrides
from secfl.aggregators.chain import Chain
from secfl.attacks.byzantine import check_attack
from secfl.fl.data import describe
from secfl.fl.models import build_model
from secfl.fl.params import num_params
from secfl.methods.fedbat.binarize import binarized_segments
from secfl.pipeline import Pipeline
from secfl.privacy import Accountant, Ledger
from secfl.scenario_sections import (AttackSection, ClientSection, DataSection, ModelSection, PrivacySection,
                                     RunSection, ServerSection, Strict)

NOISE_STAGES = frozenset({"gaussian_noise", "ddgauss"})
DISCRETE = frozenset({"ddgauss"})
NEEDS_DIM = frozenset({"ddgauss"})  # stages whose "dim" defaults to the model's parameter count
NEEDS_SEGMENTS = frozenset({"fedbat_pack", "fedbat_bits"})  # stages told where the binarized weights are


NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}"  # a directory name: no separators, no leading dot


def directory_name(name: str, what: str) -> str:
    """``name`` if it can safely name a directory under runs/, else ConfigurationError with the fix."""
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise ConfigurationError(
            f"{what} name {name!r} cannot name a directory: use 1-120 letters, digits, '.', '_' or '-', "
            "not starting with '.', or give --out")
    return name


class Scenario(Strict):
    """One federated-learning experiment, fully specified."""

    name: str = "scenario"
    stages: list[dict[str, Any]] = Field(default_factory=list)
    protocol: dict[str, Any] = Field(default_factory=lambda: {"kind": "plaintext"})
    grouping: dict[str, Any] = Field(default_factory=lambda: {"kind": "individual"})
    aggregator: dict[str, Any] = Field(default_factory=lambda: {"kind": "mean"})
    pre: list[dict[str, Any]] = Field(default_factory=list, description="pre-aggregators before the rule, in order")
    method: str = Field("fedavg", description="the method (secfl list); its options go in a table of its name, "
                        "e.g. [fedbat]")
    options: dict[str, Any] = Field(default_factory=dict, description="the method's table (read from [<method>])")
    run: RunSection = RunSection()
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    client: ClientSection = ClientSection()
    server: ServerSection = ServerSection()
    privacy: PrivacySection = PrivacySection()
    attack: AttackSection | None = Field(None, description="Byzantine clients and what they do")

    @model_validator(mode="before")
    @classmethod
    def _method_table(cls, data: Any) -> Any:
        """The method's table (``[fedbat]`` for ``method = "fedbat"``) becomes ``options``."""
        if isinstance(data, Mapping) and isinstance(data.get("method"), str) and data["method"] in data \
                and data["method"] not in cls.model_fields:
            if "options" in data:
                raise ValueError(f"give the method's options either in [{data['method']}] or as options, not both")
            data = dict(data)
            data["options"] = data.pop(data["method"])
        return data

    @model_validator(mode="after")
    def _method_fits(self) -> Scenario:
        if self.method not in registry.names("method"):
            raise ValueError(f"unknown method {self.method!r}{registry.suggest(self.method, registry.names('method'))};"
                             f" choose one of {registry.names('method')}")
        method = registry.resolve("method", self.method)
        try:
            options = method.Options.model_validate(self.options)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join([self.method, *map(str, error["loc"])])
            raise ValueError(f"{where}: {error['msg']}") from None
        method.check(self, options)
        if method.reshapes(self, options) and self.build_aggregator().needs_reference:
            raise ValueError(f"aggregator {self.aggregator.get('kind')!r} compares updates with the server's own model "
                             f"update, but method {self.method!r} sends other vectors in this scenario")
        releases = method.releases(self, options)
        noiseless = any(isinstance(event, dp_accounting.NonPrivateDpEvent) for event, _, _ in releases.values())
        if noiseless and (self.privacy.target_epsilon is not None or self.privacy.budget is not None):
            raise ValueError(f"method {self.method!r} makes a release without noise ({', '.join(releases)}): no "
                             "epsilon target or budget can hold; add its noise (e.g. autoflip.noise_multiplier)")
        if self.attack is not None and self.attack.kind == "targeted_logits" and self.method != "fedagg":
            raise ValueError(f"attack 'targeted_logits' forges logits, but method {self.method!r} does not send "
                             "logits: use it with method = \"fedagg\"")
        if self.attack is not None and self.attack.explore != "none" and self.method != "autoflip":
            raise ValueError("attack.explore lies in AutoFLIP's exploration: it needs method = \"autoflip\"")
        if self.attack is not None:
            check_attack(self.attack.kind, self.attack.options)
            if self.attack.num_byzantine >= self.data.num_clients:
                raise ValueError("attack.num_byzantine must be smaller than data.num_clients")
        if any(s.get("kind") == "fedbat_bits" for s in self.stages) and self.method != "fedbat":
            raise ValueError("stage 'fedbat_bits' carries FedBAT's bits: it needs method = \"fedbat\"")
        self._check_tree()
        return self

    def _check_tree(self) -> None:
        """Grouping 'edges' is a fixed tree: whole edges, every device in every round."""
        if self.grouping.get("kind") != "edges":
            return
        per_edge = self.grouping.get("devices_per_edge")
        if isinstance(per_edge, int) and per_edge >= 1 and self.data.num_clients % per_edge:
            raise ValueError(f"grouping 'edges': data.num_clients = {self.data.num_clients} is not a multiple of "
                             f"devices_per_edge = {per_edge}")
        if self.clients_per_round != self.data.num_clients or self.run.sampling != "fixed":
            raise ValueError("grouping 'edges' (a fixed tree of edges) needs every client in every round: leave "
                             "run.clients_per_round unset and run.sampling = \"fixed\"")

    def method_options(self) -> Any:
        """The method's options (its ``Options`` model, defaults filled in)."""
        return registry.resolve("method", self.method).Options.model_validate(self.options)

    @property
    def clients_per_round(self) -> int:
        return self.run.clients_per_round or self.data.num_clients

    @property
    def sample_rate(self) -> float:
        """q: the fraction (fixed) or probability (Poisson) of clients in a round."""
        return self.clients_per_round / self.data.num_clients

    def build_pipeline(self) -> Pipeline:
        """Construct and check the pipeline (raises ConfigurationError before any work)."""
        if self.clients_per_round > self.data.num_clients:
            raise ConfigurationError(
                f"run.clients_per_round = {self.clients_per_round} exceeds data.num_clients = {self.data.num_clients}"
            )
        poisson = self.run.sampling == "poisson"
        stages = [{"dim": self.model_dim(), **s} if s.get("kind") in NEEDS_DIM else s for s in self.stages]
        stages = [{"segments": self.binarized_segments(), **s} if s.get("kind") in NEEDS_SEGMENTS else s
                  for s in stages]
        return Pipeline(
            clients_per_round=self.data.num_clients if poisson else self.clients_per_round,
            stages=[registry.build("stage", s, where=f"stages[{i}]") for i, s in enumerate(stages)],
            protocol=registry.build("protocol", self.protocol),
            grouping=registry.build("grouping", self.grouping),
            aggregator=self.build_aggregator(),
            weight_cap=self.client.weight_cap,
        )

    def build_aggregator(self) -> Any:
        """The rule, behind its pre-aggregators if any (a ``Chain``)."""
        rule = registry.build("aggregator", self.aggregator)
        pre = [registry.build("pre", p, where=f"pre[{i}]") for i, p in enumerate(self.pre)]
        return Chain(rule, pre) if pre else rule

    def model_dim(self) -> int:
        """The number of model parameters (the update's dimension)."""
        shape, classes = describe(self.data.dataset, **self.data.options)
        return num_params(build_model(self.model.kind, input_shape=shape, num_classes=classes, seed=0,
                                      **self.model.options))

    def binarized_segments(self) -> list[tuple[int, int]]:
        """Where FedBAT's binarized weights sit in the model's flattened update."""
        shape, classes = describe(self.data.dataset, **self.data.options)
        return binarized_segments(build_model(self.model.kind, input_shape=shape, num_classes=classes, seed=0,
                                              **self.model.options))

    def accountant(self) -> Accountant:
        """The accountant matching the engine's sampling (``privacy.accountant``; auto picks PLD when it can)."""
        sampling = "poisson" if self.run.sampling == "poisson" else "without_replacement"
        kind, discrete = self.privacy.accountant, any(s.get("kind") in DISCRETE for s in self.stages)
        if kind == "pld" and discrete:
            raise ConfigurationError("privacy.accountant = 'pld': the discrete-noise stage (ddgauss) is accounted in "
                                     "RDP only; use 'rdp' or 'auto'")
        if kind == "auto":
            kind = "pld" if sampling == "poisson" and not discrete else "rdp"
        return Accountant(kind, sampling)

    def with_noise_solved(self) -> Scenario:
        """This scenario with ``privacy.target_epsilon`` turned into the noise stage's noise_multiplier."""
        target = self.privacy.target_epsilon
        if target is None:
            return self
        noisy = [i for i, s in enumerate(self.stages) if s.get("kind") in NOISE_STAGES]
        if len(noisy) != 1 or "std" in self.stages[noisy[0]]:
            raise ConfigurationError(
                f"privacy.target_epsilon needs exactly one noise stage ({sorted(NOISE_STAGES)}) without std=; "
                f"found {len(noisy)}"
            )
        index, accountant = noisy[0], self.accountant()
        if "noise_multiplier" in self.stages[index]:  # both given (or solved before): they must agree
            eps = accountant.epsilon_of([(self.build_pipeline().dp_event(), self.run.rounds)],
                                        sample_rate=self.sample_rate, delta=self.privacy.delta,
                                        unsampled=self._releases())
            if eps > target * (1 + 1e-9):
                raise ConfigurationError(
                    f"stages[{index}]: noise_multiplier = {self.stages[index]['noise_multiplier']} gives epsilon "
                    f"{eps:.4g} > privacy.target_epsilon = {target:g}; give only one of them"
                )
            return self

        def event(z: float) -> Any:
            return self._with_stage(index, noise_multiplier=z).build_pipeline().dp_event()

        z = accountant.calibrate(event, target_epsilon=target, sample_rate=self.sample_rate,
                                 rounds=self.run.rounds, delta=self.privacy.delta, unsampled=self._releases())
        return self._with_stage(index, noise_multiplier=z)

    def noise_stage(self) -> int:
        """The index of the one noise stage with a ``noise_multiplier`` (after ``with_noise_solved``).

        Raises:
            ConfigurationError: no such stage, or more than one noise stage.
        """
        noisy = [i for i, s in enumerate(self.stages) if s.get("kind") in NOISE_STAGES]
        if len(noisy) != 1 or "noise_multiplier" not in self.stages[noisy[0]]:
            raise ConfigurationError(f"{self.name}: needs exactly one noise stage with noise_multiplier= "
                                     f"({sorted(NOISE_STAGES)}); found {len(noisy)}")
        return noisy[0]

    def with_noise_multiplier(self, noise_multiplier: float) -> Scenario:
        """This scenario with its noise stage's multiplier replaced and no target (``noise_stage``)."""
        plain = self.model_copy(update={"privacy": self.privacy.model_copy(update={"target_epsilon": None,
                                                                                     "budget": None})})
        return plain._with_stage(self.noise_stage(), noise_multiplier=float(noise_multiplier))

    def epsilon_at(self, noise_multiplier: float, rounds: int) -> float:
        """The released models' epsilon after ``rounds`` full rounds if the noise stage had this multiplier
        (the accountant and sampling of this scenario; ``noise_stage``)."""
        event = self.with_noise_multiplier(noise_multiplier).build_pipeline().dp_event()
        return self.accountant().epsilon_of([(event, rounds)], sample_rate=self.sample_rate,
                                            delta=self.privacy.delta, unsampled=self._releases())

    def noise_at(self, epsilon: float, rounds: int) -> float:
        """The smallest noise multiplier (to 0.1%) whose ``epsilon_at`` after ``rounds`` is at most ``epsilon``."""
        index = self.noise_stage()
        return self.accountant().calibrate(
            lambda z: self._with_stage(index, noise_multiplier=z).build_pipeline().dp_event(),
            target_epsilon=epsilon, sample_rate=self.sample_rate, rounds=rounds, delta=self.privacy.delta,
            unsampled=self._releases())

    def _releases(self) -> list[tuple[Any, int]]:
        """The method's one-time releases, each as often as an uninterrupted run makes it at most."""
        method = registry.resolve("method", self.method)
        return [(event, times) for event, _, times in method.releases(self, self.method_options()).values()]

    def _with_stage(self, index: int, **changes: Any) -> Scenario:
        stages = [dict(s) for s in self.stages]
        stages[index].update(changes)
        return self.model_copy(update={"stages": stages})

    def ledger(self, pipeline: Pipeline, *, force: bool = False) -> Ledger | None:
        """The run's privacy ledger, or None when the pipeline adds no DP noise (``force``: a ledger anyway)."""
        if not pipeline.private and not force:
            if self.privacy.target_epsilon is not None or self.privacy.budget is not None:
                raise ConfigurationError("privacy.target_epsilon / budget need a noise stage in stages")
            return None
        budget = self.privacy.budget if self.privacy.budget is not None else self.privacy.target_epsilon
        return Ledger(self.accountant(), sample_rate=self.sample_rate, delta=self.privacy.delta, budget=budget)

    def resolved(self) -> dict[str, Any]:
        """Every key with its effective value (defaults filled in; None left out, as TOML has no null)."""
        out = _drop_none(self.model_dump())
        out["options"] = _drop_none(self.method_options().model_dump())  # the method's defaults filled in too
        return out


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _describe(error: Mapping[str, Any], source: str) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        parent: Any = Scenario
        for part in error["loc"][:-1]:
            field = parent.model_fields.get(str(part)) if isinstance(parent, type) else None
            parent = field.annotation if field is not None else None
        fields = list(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
        return f"{source}: unknown key {loc!r}{registry.suggest(str(error['loc'][-1]), fields)}"
    if error["type"] == "value_error":
        return f"{source}: {loc + ': ' if loc else ''}{error['msg'].removeprefix('Value error, ')}"
    return f"{source}: {loc}: {error['msg']} (got {error.get('input')!r})"


def validate(data: Mapping[str, Any], *, source: str = "scenario") -> Scenario:
    """Validate a scenario mapping and build its pipeline once, so every mistake surfaces now.

    Raises:
        ConfigurationError: one line naming the first bad key (and how many more there are).
    """
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigurationError(_describe(errors[0], source) + more) from None
    scenario = scenario.with_noise_solved()
    scenario.ledger(scenario.build_pipeline())
    return scenario


def load(path: str | Path, *, overrides: Sequence[str] = ()) -> Scenario:
    """Read a scenario TOML file, apply ``--set`` overrides and validate it.

    Raises:
        ConfigurationError: unreadable file, invalid TOML, or an invalid scenario.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read scenario {str(path)!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    data = _anchor_data_path(data, path.parent)
    if not overrides:
        return validate(data, source=str(path))
    # the source names the --set values too: the error may be in them (the message names the key)
    return validate(apply_overrides(data, overrides), source=f"{path} with --set {' '.join(overrides)}")


def _anchor_data_path(data: dict[str, Any], directory: Path) -> dict[str, Any]:
    """A relative ``data.options.path`` written in a scenario file, made absolute against the file's directory
    (before ``--set`` overrides: a path given there, or in Python, is relative to the current directory)."""
    options = data.get("data", {}).get("options") if isinstance(data.get("data"), dict) else None
    if not isinstance(options, dict) or not isinstance(options.get("path"), str) or not options["path"]:
        return data
    anchored = (directory / Path(options["path"]).expanduser()).resolve()
    return {**data, "data": {**data["data"], "options": {**options, "path": str(anchored)}}}
