"""Your own data: an .npz file as a scenario's dataset, from_arrays / from_torch_dataset, registered datasets, the
natural partition from owner ids, every bad file refused with a ConfigurationError, and the opt-in adapters'
missing-package error (nothing is downloaded)."""

import functools
import io
import pickle
import sys
import zipfile

import numpy as np
import pytest
import torch

import secfl
from secfl import engine, registry, scenario
from secfl.exceptions import ConfigurationError
from secfl.fl import data as fl_data
from secfl.fl.data import Dataset, describe, load_dataset, natural_owners
from secfl.fl.own_data import (from_arrays, from_flower, from_torch_dataset, from_torchvision, load_npz, npz_summary,
                               read_npz)
from secfl.fl.partition import PARTITIONS
from secfl.run_setup import RunSetup
from secfl.runs import RunDir


def arrays(n=200, *, owners=None, shape=(8, 8), classes=4, seed=0):
    """Learnable tiny data: the label is the sign pattern of the class prototype, plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    prototypes = rng.normal(size=(classes, *shape))
    x = (prototypes[y] + 0.3 * rng.normal(size=(n, *shape))).astype(np.float32)
    out = {"x": x, "y": y.astype(np.int64)}
    if owners is not None:
        out["client"] = (np.arange(n) % owners) * 10 + 7  # any integer ids: renumbered by the partition
    return out


def write(tmp_path, name="my.npz", **keys):
    path = tmp_path / name
    np.savez(path, **keys)
    return path


def scenario_dict(path, **data):
    return {"name": "own", "run": {"rounds": 2, "seed": 1},
            "data": {"dataset": "npz", "num_clients": 4, "options": {"path": str(path)}, **data},
            "model": {"kind": "mlp", "options": {"hidden": 16}}, "client": {"batch_size": 16, "lr": 0.1}}


# ------------------------------------------------------------------------------------------ round trips

def test_npz_scenario_file_runs_with_a_path_relative_to_the_scenario(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    folder.mkdir()
    write(folder, **arrays())
    toml = folder / "s.toml"
    toml.write_text('name = "own"\n[run]\nrounds = 2\n[data]\ndataset = "npz"\nnum_clients = 4\n'
                    'options = { path = "my.npz" }\n[model]\nkind = "mlp"\noptions = { hidden = 16 }\n')
    monkeypatch.chdir(tmp_path)  # not the scenario's directory: the path is still found
    spec = scenario.load(toml)
    assert spec.data.options["path"] == str((folder / "my.npz").resolve())
    summary = engine.run(spec, RunDir(tmp_path / "run"))
    assert summary["rounds"] == 2 and 0.0 <= summary["final_accuracy"] <= 1.0
    assert spec.model_dim() == 64 * 16 + 16 + 16 * 4 + 4  # describe: (1, 8, 8) inputs, 4 classes
    # --set paths (like Python ones) are relative to the current directory
    assert scenario.load(toml, overrides=['data.options.path="exp/my.npz"']).data.options["path"] == "exp/my.npz"


def test_npz_dataset_is_split_standardised_and_deterministic(tmp_path):
    raw = arrays(200, shape=(20,))
    path = write(tmp_path, x=(raw["x"] * 50 + 3).astype(np.float64), y=raw["y"])
    a, b = load_npz(path, seed=3), load_npz(path, seed=3)
    assert a.name == "npz" and a.input_shape == (20,) and a.num_classes == 4
    assert a.x_train.shape == (160, 20) and a.x_test.shape == (40, 20) and a.x_train.dtype == np.float32
    assert np.array_equal(np.bincount(a.y_test), [10, 10, 10, 10])  # stratified by label
    assert abs(float(a.x_train.mean())) < 1e-4 and abs(float(a.x_train.std()) - 1) < 1e-3
    assert np.array_equal(a.x_train, b.x_train) and a.natural_clients is None
    assert not np.array_equal(a.y_train, load_npz(path, seed=4).y_train)
    feature = load_npz(path, standardize="feature")
    assert np.allclose(feature.x_train.mean(axis=0), 0, atol=1e-4) and np.allclose(feature.x_train.std(axis=0), 1,
                                                                                    atol=1e-3)
    assert describe("npz", path=str(path)) == ((20,), 4)


def test_images_get_a_channel_and_a_given_test_set_is_kept(tmp_path):
    train, test = arrays(120, shape=(6, 6)), arrays(30, shape=(6, 6), seed=1)
    path = write(tmp_path, x=(train["x"] * 40 + 100).clip(0, 255).astype(np.uint8), y=train["y"],
                 x_test=(test["x"] * 40 + 100).clip(0, 255).astype(np.uint8), y_test=test["y"])
    ds = load_npz(path, classes=6)
    assert ds.input_shape == (1, 6, 6) and ds.num_classes == 6 and ds.x_train.shape == (120, 1, 6, 6)
    assert ds.x_test.shape == (30, 1, 6, 6) and sorted(ds.y_test) == sorted(test["y"])
    assert npz_summary(path, classes=6).input_shape == (1, 6, 6)
    assert describe("npz", path=str(path)) == ((1, 6, 6), 4)


def test_natural_partition_from_client_ids(tmp_path):
    path = write(tmp_path, **arrays(200, owners=4))
    assert natural_owners("npz", path=str(path)) == 4
    spec = scenario.validate(scenario_dict(path, partition={"kind": "natural"}))
    setup = RunSetup(spec)
    owners = setup.data.natural_clients
    assert [np.unique(owners[shard]).size for shard in setup.shards] == [1, 1, 1, 1]
    assert sum(len(s) for s in setup.shards) == len(setup.data.y_train)
    summary = engine.run(spec, RunDir(tmp_path / "run"))
    assert summary["rounds"] == 2
    with pytest.raises(ConfigurationError, match="num_clients = 5 but dataset 'npz' has 4 distinct owner ids; make them equal"):
        scenario.validate(scenario_dict(path, num_clients=5, partition={"kind": "natural"}))
    plain = write(tmp_path, "plain.npz", **arrays(200))
    with pytest.raises(ConfigurationError, match="'npz' has no natural clients"):
        scenario.validate(scenario_dict(plain, partition={"kind": "natural"}))


@pytest.mark.parametrize("kind", PARTITIONS)
def test_every_partition_works_on_npz_data(tmp_path, kind):
    path = write(tmp_path, **arrays(200, owners=4))
    extra = {"alpha": 1.0} if kind == "dirichlet" else {"shards_per_client": 2} if kind == "shards" else {}
    spec = scenario.validate(scenario_dict(path, public=20, partition={"kind": kind, "min_per_client": 5, **extra}))
    setup = RunSetup(spec)
    assert len(setup.shards) == 4 and all(len(s) >= 5 for s in setup.shards)
    assert setup.data.x_public.shape == (20, 1, 8, 8)
    assert len(np.unique(np.concatenate(setup.shards))) == sum(len(s) for s in setup.shards)


# --------------------------------------------------------------------------------------------- bad files

BAD = {
    "missing y": ({"x": np.zeros((10, 3))}, "lacks key\\(s\\) \\['y'\\]"),
    "unknown key": ({**arrays(20), "clients": np.zeros(20, int)},
                    "unknown key\\(s\\) \\['clients'\\] \\('clients': did you mean 'client'\\?\\)"),
    "x 1-d": ({"x": np.zeros(20), "y": np.arange(20) % 2}, "x has shape \\(20,\\)"),
    "x 5-d": ({"x": np.zeros((4, 1, 1, 2, 2)), "y": np.arange(4) % 2}, "x has shape"),
    "empty dim": ({"x": np.zeros((20, 0)), "y": np.arange(20) % 2}, "no empty dimension"),
    "length": ({"x": np.zeros((20, 3)), "y": np.arange(19) % 2}, "y has shape \\(19,\\).*\\(20,\\)"),
    "float labels": ({"x": np.zeros((20, 3)), "y": np.arange(20) % 2 * 1.0},
                     "y has dtype float64; labels must be integers \\(e.g. y.astype"),
    "2-d labels": ({"x": np.zeros((20, 3)), "y": np.zeros((20, 1), int)}, "y has shape \\(20, 1\\)"),
    "string x": ({"x": np.array([["a"]] * 20), "y": np.arange(20) % 2}, "x has dtype <U1"),
    "complex x": ({"x": np.zeros((20, 3), complex), "y": np.arange(20) % 2}, "x has dtype complex128"),
    "nan": ({"x": np.where(np.eye(20, 3) > 0, np.nan, 0.0), "y": np.arange(20) % 2}, "NaN or infinite"),
    "inf": ({"x": np.full((20, 3), np.inf), "y": np.arange(20) % 2}, "NaN or infinite.*20 example"),
    "beyond float32": ({"x": np.full((20, 3), 1e300), "y": np.arange(20) % 2}, "float32's range"),
    "negative label": ({"x": np.zeros((20, 3)), "y": np.arange(20) % 2 - 1}, "y\\[0\\] = -1 is negative"),
    "one class": ({"x": np.zeros((20, 3)), "y": np.zeros(20, int)}, ">= 2 classes"),
    "too few": ({"x": np.zeros((1, 3)), "y": np.ones(1, int)}, "at least 2 are needed"),
    "x_test alone": ({**arrays(20), "x_test": np.zeros((5, 8, 8))}, "x_test is given without y_test"),
    "test shape": ({**arrays(20), "x_test": np.zeros((5, 7, 7)), "y_test": np.zeros(5, int)}, "must match"),
    "test label": ({**arrays(20), "x_test": np.zeros((5, 8, 8)), "y_test": np.arange(5) - 2}, "y_test\\[0\\] = -2"),
    "client float": ({**arrays(20), "client": np.zeros(20)}, "client has dtype float64"),
    "client length": ({**arrays(20), "client": np.zeros(3, int)}, "client has shape \\(3,\\)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_a_configuration_error(tmp_path, case):
    keys, fragment = BAD[case]
    path = write(tmp_path, **keys)
    with pytest.raises(ConfigurationError, match=fragment):
        read_npz(path)
    with pytest.raises(ConfigurationError, match=fragment):  # before any training (most at validation)
        RunSetup(scenario.validate(scenario_dict(path)))


def test_classes_option_bounds_the_labels(tmp_path):
    path = write(tmp_path, **arrays(40))
    with pytest.raises(ConfigurationError, match="y holds 10 label\\(s\\) >= classes = 3 \\(e.g. y\\[3\\] = 3\\)"):
        load_npz(path, classes=3)
    with_test = write(tmp_path, "t.npz", **arrays(40), x_test=np.zeros((5, 8, 8)), y_test=np.full(5, 5))
    assert describe("npz", path=str(with_test)) == ((1, 8, 8), 6)  # classes: the largest label of y or y_test + 1
    with pytest.raises(ConfigurationError, match="y_test holds 5 label\\(s\\) >= classes = 4"):
        load_npz(with_test, classes=4)
    with pytest.raises(ConfigurationError, match="classes=1 is invalid"):
        describe("npz", path=str(path), classes=1)
    with pytest.raises(ConfigurationError, match="unknown option\\(s\\) \\['colour'\\]; accepted: path, classes"):
        scenario.validate(scenario_dict(path, options={"path": str(path), "colour": 1}))
    with pytest.raises(ConfigurationError, match="standardize='z' is invalid"):
        scenario.validate(scenario_dict(path, options={"path": str(path), "standardize": "z"}))


def test_pickled_object_array_is_refused_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("the file was unpickled",))

    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([[Boom()]] * 20, dtype=object), y=np.arange(20) % 2)
    with pytest.raises(ConfigurationError, match="x is an object array \\(pickled Python objects\\): refused"):
        read_npz(path)
    with pytest.raises(ConfigurationError, match="object array"):
        describe("npz", path=str(path))
    labels = tmp_path / "evil_labels.npz"
    np.savez(labels, x=np.zeros((20, 3)), y=np.array([Boom()] * 20, dtype=object))
    with pytest.raises(ConfigurationError, match="y is an object array"):
        load_npz(labels)


@pytest.mark.parametrize("content", ["pickle", "npy", "text", "truncated", "not npy member", "lying header"])
def test_files_that_are_not_npz_archives(tmp_path, content):
    path = tmp_path / "data.npz"
    if content == "pickle":
        path.write_bytes(pickle.dumps({"x": [[1.0]], "y": [0]}))
    elif content == "npy":
        np.save(tmp_path / "data.npy", np.zeros((4, 2)))
        (tmp_path / "data.npy").rename(path)
    elif content == "text":
        path.write_text("x,y\n1,0\n")
    elif content == "truncated":
        np.savez(path, **arrays(40))
        path.write_bytes(path.read_bytes()[:-200])
    elif content == "not npy member":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", b"not an array at all")
            archive.writestr("y.npy", b"\x93NUMPY")
    else:  # a header claiming 80 GB over a few bytes: refused before anything is allocated
        member = io.BytesIO()
        np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10)})
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", member.getvalue() + bytes(64))
            archive.writestr("y.npy", b"")
    with pytest.raises(ConfigurationError, match="not an .npz \\(zip\\) archive|corrupt or not written by NumPy|"
                                                 "cannot read"):
        read_npz(path)


def test_missing_or_bad_path(tmp_path):
    with pytest.raises(ConfigurationError, match="not a readable file.*relative to that file's directory"):
        scenario.validate(scenario_dict(tmp_path / "nowhere.npz"))
    with pytest.raises(ConfigurationError, match="options.path=None is invalid"):
        scenario.validate({**scenario_dict("x"), "data": {"dataset": "npz", "num_clients": 4}})
    with pytest.raises(ConfigurationError, match="not a readable file"):
        read_npz(tmp_path)  # a directory


# ------------------------------------------------------------------------------------- the Python API

def test_from_arrays_accepts_tensors_and_checks_like_the_file(tmp_path):
    raw = arrays(100, owners=5, shape=(12,))
    ds = from_arrays(torch.from_numpy(raw["x"]), torch.from_numpy(raw["y"]), client=raw["client"], seed=2)
    assert ds.input_shape == (12,) and ds.num_classes == 4 and ds.natural_clients is not None
    assert np.array_equal(np.unique(ds.natural_clients), np.unique(raw["client"]))
    assert len(ds.y_train) + len(ds.y_test) == 100
    with pytest.raises(ConfigurationError, match="from_arrays: y has shape \\(3,\\)"):
        from_arrays(raw["x"], raw["y"][:3])
    with pytest.raises(ConfigurationError, match="not a rectangular numeric array"):
        from_arrays([[1.0, 2.0], [3.0]], [0, 1])
    with pytest.raises(ConfigurationError, match="y_test is given without x_test"):
        from_arrays(raw["x"], raw["y"], y_test=raw["y"])


def test_from_torch_dataset_iterates_pairs():
    raw = arrays(60, shape=(1, 5, 5))
    pairs = torch.utils.data.TensorDataset(torch.from_numpy(raw["x"]), torch.from_numpy(raw["y"]))
    ds = from_torch_dataset(pairs, test=pairs, seed=0)
    assert ds.input_shape == (1, 5, 5) and ds.x_train.shape == (60, 1, 5, 5) and ds.x_test.shape == (60, 1, 5, 5)
    assert sorted(ds.y_train) == sorted(raw["y"].tolist()) and ds.name == "torch"

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return ((torch.ones(3) * i, i % 2) for i in range(10))

    assert from_torch_dataset(Stream()).input_shape == (3,)
    with pytest.raises(ConfigurationError, match="dataset\\[0\\] has label 0.5"):
        from_torch_dataset([(torch.zeros(3), 0.5)])
    with pytest.raises(ConfigurationError, match="dataset\\[1\\] has an input of shape \\(4,\\)"):
        from_torch_dataset([(torch.zeros(3), 0), (torch.zeros(4), 1)])
    with pytest.raises(ConfigurationError, match="dataset\\[0\\] is a Tensor; the dataset must yield"):
        from_torch_dataset([torch.zeros(3)])
    with pytest.raises(ConfigurationError, match="dataset is empty"):
        from_torch_dataset([])


def test_registered_dataset_and_loader_run_in_a_scenario(tmp_path, monkeypatch):
    raw = arrays(200, owners=4, shape=(20,))
    monkeypatch.setitem(fl_data.LOADERS, "fixed", None)  # restored after the test
    registry.register("dataset", "fixed", from_arrays(raw["x"], raw["y"], client=raw["client"]))
    registry.register("dataset", "mine", functools.partial(from_arrays, raw["x"], raw["y"]))
    monkeypatch.setitem(fl_data.LOADERS, "mine", fl_data.LOADERS["mine"])
    assert "mine" in registry.names("dataset") and describe("mine") == ((20,), 4)
    assert natural_owners("fixed") == 4 and natural_owners("mine") is None
    base = {"run": {"rounds": 1}, "model": {"kind": "logreg"}}
    spec = scenario.validate({**base, "data": {"dataset": "fixed", "num_clients": 4, "partition": {"kind": "natural"}}})
    assert engine.run(spec, RunDir(tmp_path / "fixed"))["rounds"] == 1
    spec = scenario.validate({**base, "data": {"dataset": "mine", "num_clients": 4,
                                               "options": {"standardize": "feature"}}})
    setup = RunSetup(spec)
    assert setup.data.name == "mine" and np.allclose(setup.data.x_train.std(axis=0), 1, atol=1e-3)
    assert not np.array_equal(setup.data.y_train, load_dataset("mine", seed=5).y_train)  # the scenario's seed
    with pytest.raises(ConfigurationError, match="dataset 'mine' got unknown option\\(s\\) \\['nope'\\]"):
        load_dataset("mine", seed=0, nope=1)
    with pytest.raises(ConfigurationError, match="fixed Dataset and takes no options"):
        describe("fixed", path="x")


def test_a_loader_returning_junk_is_refused(monkeypatch):
    monkeypatch.setitem(fl_data.LOADERS, "junk", lambda: np.zeros(3))
    with pytest.raises(ConfigurationError, match="returned a ndarray, not a secfl Dataset"):
        load_dataset("junk", seed=0)
    good = from_arrays(**arrays(40, shape=(3,)))
    bad = Dataset(**{**good.__dict__, "y_train": good.y_train + 10})
    monkeypatch.setitem(fl_data.LOADERS, "junk", lambda seed: bad)
    with pytest.raises(ConfigurationError, match="y_train must be int64 \\[32\\] labels in \\[0, 4\\)"):
        load_dataset("junk", seed=0)
    monkeypatch.setitem(fl_data.LOADERS, "junk", "secfl.fl.nothing:here")
    with pytest.raises(ConfigurationError, match="cannot import"):
        describe("junk")


def test_public_api_is_exported():
    for name in ("from_arrays", "from_torch_dataset", "load_npz", "from_torchvision", "from_flower", "Dataset"):
        assert name in secfl.__all__ and hasattr(secfl, name)


# --------------------------------------------------------------------- opt-in adapters: never a download

@pytest.mark.parametrize(("call", "package", "install"), [
    (lambda: from_torchvision("MNIST", "data"), "torchvision", "pip install torchvision"),
    (lambda: from_flower("ylecun/mnist"), "flwr_datasets", "pip install flwr-datasets"),
])
def test_adapters_name_the_package_to_install(monkeypatch, call, package, install):
    for module in (package, f"{package}.datasets", f"{package}.transforms"):
        monkeypatch.setitem(sys.modules, module, None)  # `import` now fails as if it were not installed
    with pytest.raises(ConfigurationError, match=f"{package} is not installed.*{install}"):
        call()
