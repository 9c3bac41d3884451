"""The training entry point: it learns, skips training when a checkpoint of the same run exists, never reuses a
stale checkpoint, survives broken ones, and refuses bad input."""
import multiprocessing
import os
import warnings

import pytest
import torch

from aae_tutorial import checkpoints, engine, experiments, nets, recipes, steps, train
from aae_tutorial.aae import AAE
from aae_tutorial.categorical import CategoricalAAE
from aae_tutorial.priors import Gaussian

QUICK = experiments.RunMode("quick", "test")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_run_mode(monkeypatch):
    monkeypatch.setenv("AAE_MODE", "full")
    assert experiments.run_mode().full and experiments.run_mode().pick(quick=1, full=2) == 2
    monkeypatch.setenv("AAE_MODE", "Quick ")
    assert experiments.run_mode().name == "quick"
    monkeypatch.setenv("AAE_MODE", "fast")
    with pytest.raises(ValueError, match="AAE_MODE must be one of"):
        experiments.run_mode()
    monkeypatch.delenv("AAE_MODE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # quick by default even on a GPU: full is opt-in
    assert experiments.run_mode().name == "quick" and "set AAE_MODE=full" in str(experiments.run_mode())


def test_tests_run_in_quick_mode_unless_told_otherwise():
    assert experiments.run_mode().name == "quick"  # tests/conftest.py pins it, also on a CUDA machine


def test_minibatches_cover_every_index_once():
    batches = list(train.minibatches(1000, 100, "cpu"))
    assert len(batches) == 10 and torch.equal(torch.cat(batches).sort().values, torch.arange(1000))
    assert [len(b) for b in train.minibatches(250, 100, "cpu")] == [100, 100]  # the incomplete batch is dropped
    with pytest.raises(ValueError, match="batch_size"):
        list(train.minibatches(10, 100, "cpu"))


class TinyAE(torch.nn.Module):
    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.enc, self.dec = nets.encoder(2, (32,)), nets.decoder(2, (32,))
        self.opt = recipes.adam(self.parameters(), lr=lr)


def tiny_step(model, x):
    def step(idx):
        loss = steps.reconstruction_loss(model.dec(model.enc(x[idx])), x[idx])
        steps.update(model.opt, loss)
        return {"loss": loss}
    return step


def patterns(n=200):
    torch.manual_seed(0)
    prototypes = (torch.rand(4, 784) > 0.7).float()  # 4 patterns: compressible into a 2-D code
    return prototypes[torch.arange(n) % 4]


def test_fit_learns_and_logs_every_epoch():
    x = patterns()
    model = TinyAE()
    run = train.fit("tiny", model, tiny_step(model, x), x, 15, QUICK, "cpu", batch_size=50)
    assert run.history.epochs == 15 and len(run.history.losses["loss"]) == 15 and not run.from_checkpoint
    assert run.history.losses["loss"][-1] < 0.5 * run.history.losses["loss"][0]


def test_fit_loads_the_checkpoint_of_the_same_run(cache):
    x = patterns(100)
    torch.manual_seed(0)
    first_model = TinyAE()
    first = train.fit("tiny", first_model, tiny_step(first_model, x), x, 2, QUICK, "cpu", batch_size=50)
    assert not list(cache.rglob("*.tmp"))  # written atomically, nothing left behind
    torch.manual_seed(0)
    again_model = TinyAE()
    again = train.fit("tiny", again_model, tiny_step(again_model, x), x, 2, QUICK, "cpu", batch_size=50)
    assert again.from_checkpoint and again.history.losses == first.history.losses
    assert again.wall_time_s == first.wall_time_s and "loaded from a verified checkpoint of an earlier run" in again.describe()
    assert all(torch.equal(a, b) for a, b in zip(first_model.state_dict().values(), again_model.state_dict().values()))


def _fit(model, x, step=None, epochs=1, config=None, run_mode=QUICK):
    return train.fit("m", model, step or tiny_step(model, x), x, epochs, run_mode, "cpu", batch_size=50, config=config)


@pytest.mark.parametrize("change", ["nothing", "init_args", "data", "step_source", "config", "mode", "epochs"])
def test_any_change_to_the_run_trains_anew(change):
    x = patterns(100)
    torch.manual_seed(0)
    _fit(TinyAE(), x)
    torch.manual_seed(0)
    model = TinyAE(lr=2e-2) if change == "init_args" else TinyAE()
    data = x.flip(0) if change == "data" else x
    def rewritten_step(idx):  # the same loss, written differently: still a different step
        loss = 1.0 * steps.reconstruction_loss(model.dec(model.enc(data[idx])), data[idx])
        steps.update(model.opt, loss)
        return {"loss": loss}

    step = rewritten_step if change == "step_source" else None
    run = _fit(model, data, step, epochs=2 if change == "epochs" else 1, config={"x": 1} if change == "config" else None,
               run_mode=experiments.RunMode("full", "t") if change == "mode" else QUICK)
    assert run.from_checkpoint == (change == "nothing")


def test_key_covers_the_training_loop(monkeypatch):
    x = patterns(100)
    def key():
        return checkpoints.key("k", TinyAE(), lambda idx: {}, [x], {}, "quick")
    before = key()
    def minibatches(n, batch_size, device, generator=None):  # e.g. a loop that no longer shuffles
        yield from torch.arange(n - n % batch_size).split(batch_size)
    monkeypatch.setattr(train, "minibatches", minibatches)
    assert key() != before


def test_key_covers_every_constructor_argument_and_the_prior():
    x = patterns(100)
    def key(model):
        return checkpoints.key("k", model, lambda idx: {}, [x], {}, "quick")
    def built(make):
        torch.manual_seed(0)
        return make()
    assert key(built(lambda: CategoricalAAE(10, 4, (8,)))) == key(built(lambda: CategoricalAAE(10, 4, (8,))))
    assert key(CategoricalAAE(10, 4, (8,))) != key(CategoricalAAE(10, 4, (8,), input_noise=0.0))
    assert key(CategoricalAAE(10, 4, (8,))) != key(CategoricalAAE(10, 4, (8,), z_std=5.0))
    assert key(AAE(Gaussian(2, 5.0), (8,))) != key(AAE(Gaussian(2, 1.0), (8,)))

def test_a_corrupt_checkpoint_in_a_read_only_folder_names_the_file_and_the_remedy(cache, monkeypatch):
    x = patterns(100)
    torch.manual_seed(0)
    _fit(TinyAE(), x)
    (path,) = cache.rglob("*.pt")
    path.write_bytes(b"not a checkpoint")

    def denied(*args, **kwargs):  # what a read-only folder answers (root would ignore a chmod here)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoints.os, "replace", denied)
    with pytest.raises(OSError, match=rf"checkpoint {path} is unusable .* cannot be set aside: Permission denied in "
                                      ".*Delete it, or set AAE_CACHE_DIR"):
        checkpoints.load(path, TinyAE())



@pytest.mark.parametrize("content", [b"", b"garbage", "truncated", "other model"])
def test_unreadable_checkpoint_is_moved_aside_and_training_runs(cache, content):
    x = patterns(100)
    torch.manual_seed(0)
    model = TinyAE()
    _fit(model, x)
    (path,) = cache.rglob("*.pt")
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif content == "other model":
        other = torch.nn.Linear(3, 3)
        torch.save({"model": other.state_dict(), "meta": {}}, path)
    else:
        path.write_bytes(content)
    torch.manual_seed(0)
    fresh = TinyAE()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.warns(UserWarning, match=rf"checkpoint {path} is unreadable .*moved it to .*\.corrupt"):
        meta = checkpoints.load(path, fresh)
    assert meta is None and not path.exists() and len(list(cache.rglob("*.corrupt"))) == 1
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())  # left as it was
    assert not _fit(fresh, x).from_checkpoint and path.exists()  # and the run trained and saved again


def test_checkpoint_with_pickled_code_is_never_executed(cache):
    path = cache / "evil.pt"
    torch.save({"model": {}, "meta": {"f": print}}, path)  # a pickled function: code, not weights
    with pytest.warns(UserWarning, match="UnpicklingError"):
        assert checkpoints.load(path, TinyAE()) is None


def _write_concurrently(args):
    path, seed = args
    torch.manual_seed(seed)
    model = torch.nn.Linear(200, 200)
    meta = {"history": {"epochs": 0, "losses": {}, "metrics": {}}, "mode": "quick", "device": "cpu",
            "wall_time_s": float(seed)}
    for _ in range(20):
        checkpoints.save(path, model, meta)
    return {k: v for k, v in model.state_dict().items()}


def test_concurrent_writers_never_mix_or_crash(cache):
    path = cache / "shared.pt"
    ctx = multiprocessing.get_context("spawn")  # fork after torch has started threads can deadlock
    with ctx.Pool(2) as pool:
        states = pool.map(_write_concurrently, [(path, 0), (path, 1)])
    model = torch.nn.Linear(200, 200)
    meta = checkpoints.load(path, model)
    seed = int(meta["wall_time_s"])
    assert seed in (0, 1)
    assert all(torch.equal(v, states[seed][k]) for k, v in model.state_dict().items())
    assert not list(cache.glob("*.tmp"))


def test_non_finite_loss_stops_training_before_anything_is_saved(cache):
    x = patterns(100)
    model = TinyAE(lr=1e30)
    with pytest.raises(train.NonFiniteLossError, match="loss became .* in epoch"):
        _fit(model, x, epochs=5)
    assert not list(cache.rglob("*.pt"))


@pytest.mark.parametrize("images, message", [
    (torch.full((100, 784), float("nan")), "NaN"),
    (torch.full((100, 784), 255.0), r"pixels in \[0, 1\]"),
    (torch.rand(100, 28, 28), r"shape \(N, 784\)"),
    (torch.randint(0, 2, (100, 784)), "float tensor"),
    (torch.rand(100, 784, dtype=torch.float64), "must be float32 .*float64"),
    (torch.rand(100, 784).half(), "must be float32 .*float16"),
    (torch.empty(100, 784, device="meta"), "meta device"),
])
def test_fit_refuses_bad_images(images, message):
    model = TinyAE()
    with pytest.raises(ValueError, match=message):
        train.fit("bad", model, lambda idx: {}, images, 1, QUICK, "cpu")


@pytest.mark.parametrize("kw, message", [({"batch_size": 0}, "batch_size"), ({"batch_size": 101}, "batch_size"),
                                         ({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs")])
def test_fit_refuses_bad_sizes(kw, message):
    x = patterns(100)
    model = TinyAE()
    args = {"epochs": 1, "batch_size": 50, **kw}
    with pytest.raises(ValueError, match=message):
        train.fit("bad", model, tiny_step(model, x), x, args["epochs"], QUICK, "cpu", batch_size=args["batch_size"])


def test_pick_device_follows_what_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.pick_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert train.pick_device().type == "cpu"


def test_seeding_repeats_a_run():
    train.seed_everything(7)
    a = torch.rand(3)
    train.seed_everything(7)
    assert torch.equal(a, torch.rand(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train.seed_everything(8)


@pytest.mark.parametrize("name", ["/abs/x", "../../x", "a/b", "", "x/../y"])
def test_a_run_name_cannot_write_outside_the_checkpoint_cache(name):
    from aae_tutorial import checkpoints

    with pytest.raises(ValueError, match="a run's name is letters"):
        checkpoints.path_for(name, "0123")


def test_weights_broken_by_the_last_update_are_never_saved(cache):
    x = patterns(100)
    model = TinyAE()
    train_step = tiny_step(model, x)
    calls = []

    def step(idx):
        losses = train_step(idx)  # the loss is read before this update...
        calls.append(1)
        if len(calls) == 2:  # ...so breaking the weights in the last step leaves every logged loss finite
            with torch.no_grad():
                model.dec[-1].bias.fill_(float("nan"))
        return losses

    with pytest.raises(train.NonFiniteWeightsError, match=r"non-finite weights after training \(dec\.2\.bias\)"):
        train.fit("broken", model, step, x, 1, experiments.RunMode("quick", "test"), "cpu", batch_size=50)
    assert not list(cache.rglob("*.pt"))


def key_of(model, step, data=(), config=None):
    return checkpoints.key("k", model, step, list(data), config or {}, "quick")


def test_the_key_covers_what_the_step_reads_not_only_its_source():
    x = patterns(100)
    torch.manual_seed(0)
    model = TinyAE()
    state = torch.random.get_rng_state()
    def keyed(step, data=(x,)):
        torch.random.set_rng_state(state)
        return key_of(model, step, data)
    make = lambda s: (lambda idx: model.enc(x[idx] * s))  # noqa: E731 - a value the step closes over
    assert keyed(make(1.0)) == keyed(make(1.0)) and keyed(make(1.0)) != keyed(make(0.5))
    labelled = [patterns(20), patterns(20).flip(0)]
    with_set = lambda s: (lambda idx: model.enc(s[idx % 20]))  # noqa: E731 - a labelled set not passed as data
    assert keyed(with_set(labelled[0])) != keyed(with_set(labelled[1]))
    inner = tiny_step(model, x)
    assert keyed(engine.autocast(inner, "cpu", torch.bfloat16)) != keyed(engine.autocast(inner, "cpu", torch.float16))
    assert keyed(engine.autocast(inner, "cpu", torch.bfloat16)) != keyed(
        engine.autocast(tiny_step(model, x.flip(0)), "cpu", torch.bfloat16))  # followed through the wrapper
    a, b = (lambda idx: model.enc(x[idx])), (lambda idx: model.dec(x[idx]))  # two steps on one line
    assert keyed(a) != keyed(b)


def test_the_key_covers_the_starting_weights_optimiser_settings_and_random_state():
    x = patterns(100)
    def build(seed=0):
        torch.manual_seed(seed)
        return TinyAE()
    step = lambda idx: {}  # noqa: E731
    base = key_of(build(), step, [x])
    assert key_of(build(), step, [x]) == base
    assert key_of(build(1), step, [x]) != base  # seeded elsewhere before the model was built
    halved = build()
    torch.manual_seed(0), TinyAE()  # the same random state as after build()
    with torch.no_grad():
        halved.enc[0].weight.mul_(0.5)
    assert key_of(halved, step, [x]) != base
    retuned = build()
    retuned.opt.param_groups[0]["lr"] = 0.5  # set after construction
    assert key_of(retuned, step, [x]) != base
    model = build()
    torch.rand(1)  # the same model, but the data order and noise would differ
    assert key_of(model, step, [x]) != base


def test_a_run_leaves_the_same_random_state_trained_or_loaded():
    x = patterns(100)
    draws = []
    for _ in range(2):
        torch.manual_seed(0)
        model = TinyAE()
        run = train.fit("rng", model, tiny_step(model, x), x, 2, QUICK, "cpu", batch_size=50)
        draws.append((run.from_checkpoint, torch.rand(3)))
    assert [loaded for loaded, _ in draws] == [False, True] and torch.equal(draws[0][1], draws[1][1])


@pytest.mark.parametrize("meta", [{}, "extra field", "bad history"])
def test_checkpoint_metadata_of_the_wrong_shape_is_set_aside(cache, meta):
    x = patterns(100)
    torch.manual_seed(0)
    model = TinyAE()
    _fit(model, x)
    (path,) = cache.rglob("*.pt")
    payload = torch.load(path, weights_only=True)
    if meta == "extra field":
        meta = {**payload["meta"], "surprise": 1}
    elif meta == "bad history":
        meta = {**payload["meta"], "history": {"epochs": 1}}
    torch.save({"model": payload["model"], "meta": meta}, path)
    with pytest.warns(UserWarning, match="unreadable .*metadata|unreadable .*history"):
        assert checkpoints.load(path, TinyAE()) is None
    assert len(list(cache.rglob("*.corrupt"))) == 1


def test_a_directory_at_the_checkpoint_path_is_set_aside(cache):
    path = cache / "checkpoints" / "d.pt"
    path.mkdir(parents=True)
    with pytest.warns(UserWarning, match="unreadable"):
        assert checkpoints.load(path, TinyAE()) is None
    assert not path.exists() and len(list(path.parent.glob("d.pt.*.corrupt"))) == 1


def test_a_failed_save_warns_with_the_path_and_keeps_the_run(monkeypatch):
    x = patterns(100)
    def full_disk(path, model, meta):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(checkpoints, "save", full_disk)
    model = TinyAE()
    with pytest.warns(UserWarning, match=r"could not write its checkpoint .*\.pt \(OSError: .*No space left"):
        run = _fit(model, x)
    assert run.history.epochs == 1 and not run.from_checkpoint


def test_an_empty_cache_variable_does_not_cache_into_the_working_directory(monkeypatch):
    from aae_tutorial import data
    monkeypatch.setenv("AAE_CACHE_DIR", "")
    assert data.cache_dir() == data.Path.home() / ".cache" / "aae_tutorial"


def test_fit_refuses_a_mode_given_as_a_string():
    model = TinyAE()
    with pytest.raises(TypeError, match="mode must be a RunMode"):
        train.fit("m", model, tiny_step(model, patterns(100)), patterns(100), 1, "quick", "cpu")


@pytest.mark.parametrize("returned", [{}, 1.0, {"loss": [1.0]}])
def test_a_step_that_returns_the_wrong_thing_is_named(returned):
    x = patterns(100)
    with pytest.raises(TypeError, match="a training step must return its losses as a non-empty dict"):
        _fit(TinyAE(), x, step=lambda idx: returned)


def test_a_callback_that_returns_the_wrong_thing_is_named():
    x = patterns(100)
    model = TinyAE()
    with pytest.raises(TypeError, match="on_epoch_end must return a dict"):
        train.fit("m", model, tiny_step(model, x), x, 1, QUICK, "cpu", batch_size=50, on_epoch_end=lambda e: 0.5)


def test_temporary_files_of_killed_writers_are_cleaned_up(cache):
    import os
    import time

    from aae_tutorial import files
    path = cache / "r.json"
    old, fresh = cache / ".r.json.abc.tmp", cache / ".r.json.def.tmp"
    for f in (old, fresh):
        f.write_bytes(b"half")
    os.utime(old, (time.time() - 2 * files.ORPHAN_AGE_S,) * 2)
    files.atomic_write(path, lambda f: f.write(b"{}"))
    assert path.read_bytes() == b"{}" and not old.exists() and fresh.exists()  # a writer may still own the fresh one


def test_a_checkpoint_copied_to_another_runs_path_is_not_trusted(cache):
    x = patterns(100)
    torch.manual_seed(0)
    _fit(TinyAE(), x)
    (path,) = cache.rglob("*.pt")
    key = checkpoints.load(path, TinyAE())["key"]
    assert path.name.endswith(f"-{key}.pt")  # the checkpoint carries the key its name was made from
    other = path.with_name("other-0123456789abcdef.pt")
    other.write_bytes(path.read_bytes())
    with pytest.warns(UserWarning, match="written under key .*, not '0123456789abcdef'"):
        assert checkpoints.load(other, TinyAE(), "0123456789abcdef") is None
    assert checkpoints.load(path, TinyAE(), key) is not None


def test_a_fifo_at_the_checkpoint_path_is_set_aside_without_hanging(cache):
    path = cache / "checkpoints" / "f.pt"
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    with pytest.warns(UserWarning, match="not a regular file"):
        assert checkpoints.load(path, TinyAE()) is None
    assert not path.exists()


def test_fit_seeds_without_seeds_says_so():
    with pytest.raises(ValueError, match="seeds must be distinct and at least one"):
        train.fit_seeds("x", TinyAE, lambda m: None, [], patterns(10), 1, experiments.RunMode("quick", "test"), "cpu")


def test_a_prior_on_another_device_than_training_is_named_with_the_fix():
    x = patterns(100)
    model = AAE(Gaussian(2, 5.0, device="meta"), (8,))
    with pytest.raises(ValueError, match=r"samples on meta, but training runs on cpu; build it on the training "
                                         r"device, e\.g\. Gaussian\(\.\.\., device=device\)"):
        train.fit("prior-device", model, lambda idx: model.train_step(x[idx]), x, 1, QUICK, "cpu", batch_size=50)


def test_a_chapter_run_asked_for_more_epochs_trains_on_to_where_a_straight_run_ends(cache, monkeypatch, capsys):
    x = patterns(100)
    ends = {}
    for how, epoch_counts in (("straight", (3,)), ("resumed", (1, 3))):
        monkeypatch.setenv("AAE_CACHE_DIR", str(cache / how))
        for epochs in epoch_counts:
            torch.manual_seed(0)
            model = TinyAE()
            ends[how] = model, _fit(model, x, epochs=epochs)
    assert "m: resumed from its checkpoint after epoch 1 of 3" in capsys.readouterr().out
    (straight, run_a), (resumed, run_b) = ends["straight"], ends["resumed"]
    assert run_b.history.losses == run_a.history.losses and run_b.epochs == 3 and not run_b.from_checkpoint
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
    torch.manual_seed(0)
    fewer = _fit(TinyAE(), x, epochs=2)  # a checkpoint of more epochs than asked: trained anew, and said so
    assert fewer.epochs == 2 and not fewer.from_checkpoint
    assert "holds 3 epochs, not the 2 asked; training anew" in capsys.readouterr().out
