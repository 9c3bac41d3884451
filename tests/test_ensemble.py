"""Batched seed ensembles (engine.stack, train.fit_seeds) run the same algorithm as one model per seed: a one-member
ensemble trains bit for bit like fit, each member of three matches its own single run, and every seed keeps its own
checkpoint and provenance."""
import pytest
import torch

from aae_tutorial import categorical, engine, experiments, nets, priors, recipes, steps, train
from aae_tutorial.aae import AAE
from aae_tutorial.categorical import CategoricalAAE, CategoryUseEntropy
from aae_tutorial.data import LabelledSet

QUICK = experiments.RunMode("quick", "test")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("AAE_PROGRESS", "0")
    return tmp_path


class PlainAE(torch.nn.Module):
    """No randomness inside the step: a member's whole trajectory is fixed by its seed and its data order."""

    batch_norm = False

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.dec = nets.mlp([784, 24, 24, 3], self.batch_norm), nets.decoder(3, (24,))
        self.opt = recipes.adam(self.parameters(), lr=3e-3)

    def train_step(self, x):
        loss = steps.reconstruction_loss(self.dec(self.enc(x)), x)
        steps.update(self.opt, loss)
        return {"reconstruction": loss}


class NormedAE(PlainAE):
    batch_norm = True  # per-member batch statistics and running averages


class BalancedAE(PlainAE):
    """A batch-level term: the entropy of the codes' mean softmax, averaged per member."""

    def __init__(self) -> None:
        super().__init__()
        self.use = CategoryUseEntropy()

    def train_step(self, x):
        loss = steps.reconstruction_loss(self.dec(self.enc(x)), x) - 5.0 * self.use(self.enc(x).softmax(1))
        steps.update(self.opt, loss)
        return {"loss": loss}


def images(n=300):
    torch.manual_seed(123)
    # 8 patterns plus noise: no pixel is constant, so no weight has a gradient that is zero up to rounding (Adam
    # would turn such rounding noise into full-size steps that differ between any two ways of computing them)
    return (torch.rand(8, 784) > 0.6).float()[torch.randint(8, (n,))] * 0.8 + 0.2 * torch.rand(n, 784)


def weights(model):
    return [v for v in model.state_dict().values()]


def single(name, make, x, seed, epochs=2, on_epoch_end=None):
    train.seed_everything(seed)
    model = make()
    run = train.fit(f"{name}-seed{seed}", model, lambda idx: model.train_step(x[idx]), x, epochs, QUICK, "cpu",
                    config={"seed": seed}, batch_size=50, on_epoch_end=on_epoch_end and on_epoch_end(model))
    return model, run


@pytest.mark.parametrize("make", [lambda: AAE(priors.Gaussian(2, 5.0), (32, 32)),
                                  lambda: CategoricalAAE(10, 4, (32, 32)),
                                  lambda: CategoricalAAE(10, 4, (32, 32), batch_norm=True, balance=1.0),
                                  lambda: CategoricalAAE(10, 2, (32, 32), head_dim=2), PlainAE],
                         ids=["aae", "categorical", "categorical-batch-norm-balance", "cluster-heads", "ae"])
def test_a_one_member_ensemble_trains_bit_for_bit_like_fit(make, tmp_path, monkeypatch):
    x = images()
    model, run = single("m", make, x, seed=7)
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path / "other"))  # no checkpoint to load: train again
    (member, member_run), = train.fit_seeds("m", make, lambda m: (lambda idx: m.train_step(x[idx])), [7], x, 2,
                                            QUICK, "cpu", batch_size=50)
    assert not member_run.from_checkpoint and member_run.ensemble == 1
    assert member_run.history.losses == run.history.losses
    assert all(torch.equal(a, b) for a, b in zip(weights(member), weights(model)))


@pytest.mark.parametrize("make", [PlainAE, NormedAE, BalancedAE], ids=["ae", "ae-batch-norm", "ae-batch-term"])
def test_each_member_of_three_matches_its_own_single_run(make):
    x = images()
    # evaluated in eval mode: with batch norm, the running averages must have been carried per member
    track = lambda m: (lambda epoch: {"first_weight": m.enc[0].weight[0, 0].item(),  # noqa: E731
                                      "test_loss": steps.reconstruction_loss(m.dec(m.enc(x[:50])), x[:50]).item()})
    singles = [single("ae", make, x, seed, epochs=3, on_epoch_end=track) for seed in (0, 1, 2)]
    # the singles' checkpoints have other keys (their config names no ensemble): this trains
    members = train.fit_seeds("ae", make, lambda m: (lambda idx: m.train_step(x[idx])), [0, 1, 2], x, 3, QUICK,
                              "cpu", batch_size=50, on_epoch_end=track)
    for (model, run), (member, member_run) in zip(singles, members):
        assert member_run.ensemble == 3 and member_run.config["seed"] == run.config["seed"]
        for metric in ("first_weight", "test_loss"):
            assert member_run.history.metrics[metric] == pytest.approx(run.history.metrics[metric], rel=1e-4, abs=1e-6)
        for a, b in zip(weights(member), weights(model)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(members[0][0].enc[0].weight, members[1][0].enc[0].weight)  # seeds differ
    (loss,) = singles[0][1].history.losses
    mean = [sum(v) / 3 for v in zip(*(r.history.losses[loss] for _, r in singles))]
    assert members[0][1].history.losses[loss] == pytest.approx(mean, rel=1e-4)  # the members' mean


def test_fit_seeds_checkpoints_each_seed_and_trains_only_what_is_missing(capsys):
    x = images()
    make_step = lambda m: (lambda idx: m.train_step(x[idx]))  # noqa: E731
    first = train.fit_seeds("ae", PlainAE, make_step, [0, 1], x, 1, QUICK, "cpu", batch_size=50)
    again = train.fit_seeds("ae", PlainAE, make_step, [0, 1], x, 1, QUICK, "cpu", batch_size=50)
    assert [r.from_checkpoint for _, r in again] == [True, True]
    assert [r.wall_time_s for _, r in again] == [r.wall_time_s for _, r in first]
    assert "its share of an ensemble of 2" in again[0][1].describe()
    for (a, _), (b, _) in zip(first, again):
        assert all(torch.equal(u, v) for u, v in zip(weights(a), weights(b)))
    with pytest.raises(ValueError, match="distinct"):
        train.fit_seeds("ae", PlainAE, make_step, [0, 0], x, 1, QUICK, "cpu", batch_size=50)


@pytest.mark.parametrize("stop_at", [0, 1, 2])
def test_an_ensemble_interrupted_while_saving_resumes_bit_for_bit(tmp_path, monkeypatch, stop_at, capsys):
    x = images()
    make_step = lambda m: (lambda idx: m.train_step(x[idx]))  # noqa: E731
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path / "whole"))
    whole = train.fit_seeds("ae", PlainAE, make_step, [0, 1, 2], x, 2, QUICK, "cpu", batch_size=50)
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path / "cut"))
    save, saves = train._save, []

    def interrupted(*args, **kwargs):
        if len(saves) == stop_at:
            raise KeyboardInterrupt  # the learner stops the kernel before this member is saved
        saves.append(args[1])
        save(*args, **kwargs)

    monkeypatch.setattr(train, "_save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.fit_seeds("ae", PlainAE, make_step, [0, 1, 2], x, 2, QUICK, "cpu", batch_size=50)
    monkeypatch.setattr(train, "_save", save)
    resumed = train.fit_seeds("ae", PlainAE, make_step, [0, 1, 2], x, 2, QUICK, "cpu", batch_size=50)
    if stop_at:
        assert f"{stop_at} of 3 members were saved before an interrupt" in capsys.readouterr().out
    for (a, _), (b, run) in zip(whole, resumed):
        assert all(torch.equal(u, v) for u, v in zip(weights(a), weights(b)))
        assert not run.from_checkpoint and run.ensemble == 3
    again = train.fit_seeds("ae", PlainAE, make_step, [0, 1, 2], x, 2, QUICK, "cpu", batch_size=50)
    assert all(r.from_checkpoint for _, r in again)  # and now every member is saved


def test_the_semisupervised_step_trains_as_an_ensemble():
    x = images(200)
    y = torch.randint(10, (200,))
    errors = lambda m: categorical.error_tracker(m, {"test": (x, y)})  # noqa: E731
    members = train.fit_seeds("semi", lambda: CategoricalAAE(10, 4, (32, 32)),
                              lambda m: categorical.semisupervised_step(m, x, LabelledSet(x[:20], y[:20])), [0, 1, 2], x, 2,
                              QUICK, "cpu", batch_size=50, on_epoch_end=errors)
    assert all(len(r.history.metrics["test_error"]) == 2 for _, r in members)
    assert all(set(r.history.losses) == {"reconstruction", "discriminator", "generator", "classification"}
               for _, r in members)


def test_stack_refuses_what_it_cannot_batch():
    with pytest.raises(ValueError, match="built alike"):
        engine.stack([PlainAE(), AAE(priors.Gaussian(2, 5.0), (8,))])
    with pytest.raises(ValueError, match="LayerNorm"):
        engine.stack([torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))] * 2)
    used = PlainAE()
    used.train_step(images(10))
    with pytest.raises(ValueError, match="already taken steps"):
        engine.stack([used])
    with pytest.raises(ValueError, match="multiple of 3"):
        engine.stack([PlainAE() for _ in range(3)]).enc(torch.rand(4, 784))


def test_stack_and_unstack_keep_each_members_weights():
    models = [PlainAE() for _ in range(3)]
    stacked = engine.stack(models)
    x = torch.rand(3, 5, 784)
    out = stacked.enc(x.reshape(15, 784)).reshape(3, 5, 3)
    for m, (model, xm) in enumerate(zip(models, x)):
        torch.testing.assert_close(out[m], model.enc(xm))  # member m sees only its own rows
    copies = [PlainAE() for _ in range(3)]
    engine.unstack_into(stacked, copies)
    for a, b in zip(models, copies):
        assert all(torch.equal(u, v) for u, v in zip(weights(a), weights(b)))
    opt = stacked.opt
    assert opt is not models[0].opt and {id(p) for g in opt.param_groups for p in g["params"]} == {
        id(p) for p in stacked.parameters()}


def test_category_use_entropy_averages_each_members_rows_apart():
    use = CategoryUseEntropy()
    k = 4
    assert use(torch.full((8, k), 1 / k)).item() == pytest.approx(torch.log(torch.tensor(4.0)).item())  # all used
    two = torch.eye(k)[[0] * 4 + [1] * 4]  # rows 0-3 all category 0, rows 4-7 all category 1
    assert use(two).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    stacked = engine.stack([BalancedAE(), BalancedAE()])
    assert stacked.use.members == 2 and stacked.use(two).item() == 0.0  # each member uses one category only


def test_a_one_member_labelled_ensemble_trains_bit_for_bit_like_fit(tmp_path, monkeypatch):
    x, y = images(200), torch.randint(10, (200,))
    labelled = LabelledSet(x[:20], y[:20])
    train.seed_everything(3)
    model = CategoricalAAE(10, 2, (32, 32), head_dim=2)
    run = train.fit("semi", model, categorical.semisupervised_step(model, x, labelled), (x, x[:20], y[:20]), 2,
                    QUICK, "cpu", config={"seed": 3}, batch_size=50)
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path / "other"))
    (member, member_run), = train.fit_together(
        [train.Member("semi", 3, labelled)], lambda _: CategoricalAAE(10, 2, (32, 32), head_dim=2),
        lambda m, s: categorical.semisupervised_step(m, x, s), x, 2, QUICK, "cpu", batch_size=50)
    assert member_run.history.losses == run.history.losses
    assert all(torch.equal(a, b) for a, b in zip(weights(member), weights(model)))


def test_each_member_draws_its_labelled_rows_from_its_own_set_only():
    x = torch.rand(10, 784)
    sets = [LabelledSet(x[:2], torch.tensor([0, 1])), LabelledSet(x[2:5], torch.tensor([2, 3, 4])),
            LabelledSet(x[5:], torch.tensor([5, 6, 7, 8, 9]))]
    stacked = LabelledSet.stack(sets)
    torch.manual_seed(0)
    xs, ys = stacked.sample(3 * 400)
    for m, s in enumerate(sets):  # member m owns rows m*400 .. (m+1)*400, as in every ensemble minibatch
        rows = ys[m * 400:(m + 1) * 400]
        assert set(rows.tolist()) == set(s.y.tolist())  # every label of its own set, and no other
        assert torch.equal(xs[m * 400:(m + 1) * 400], stacked.x[rows])
    torch.manual_seed(0)
    _, alone = sets[2].sample(7)
    torch.manual_seed(0)
    assert torch.equal(alone, sets[2].y[torch.randint(5, (7,))])  # one set draws exactly as torch.randint
    with pytest.raises(ValueError, match="multiple of 3"):
        stacked.sample(100)
    with pytest.raises(ValueError, match="int64"):
        LabelledSet(x, torch.zeros(10))


def test_labelled_members_of_different_set_sizes_train_together_and_keep_their_own_checkpoints():
    x, y = images(200), torch.randint(10, (200,))
    members = [train.Member(f"semi-{n}", 0, LabelledSet(x[:n], y[:n])) for n in (10, 50)]
    members.append(train.Member("semi-50-seed1", 1, LabelledSet(x[50:100], y[50:100])))
    make = lambda _: CategoricalAAE(10, 2, (32, 32), head_dim=2)  # noqa: E731
    step = lambda m, s: categorical.semisupervised_step(m, x, s)  # noqa: E731
    first = train.fit_together(members, make, step, x, 2, QUICK, "cpu", batch_size=50)
    assert [r.ensemble for _, r in first] == [3, 3, 3] and [r.config["seed"] for _, r in first] == [0, 0, 1]
    assert all(set(r.history.losses) >= {"classification"} for _, r in first)
    again = train.fit_together(members, make, step, x, 2, QUICK, "cpu", batch_size=50)
    assert all(r.from_checkpoint for _, r in again)
    other = [train.Member("semi-10", 0, LabelledSet(x[10:20], y[10:20]))]  # other labels: another run
    (_, rerun), = train.fit_together(other, make, step, x, 2, QUICK, "cpu", batch_size=50)
    assert not rerun.from_checkpoint


def test_stacked_cluster_heads_are_penalised_each_on_its_own():
    models = [CategoricalAAE(5, 2, (8,), head_dim=2, head_gap=3.0) for _ in range(3)]
    stacked = engine.stack(models)
    mean = sum(m.head_penalty() for m in models) / 3
    torch.testing.assert_close(stacked.head_penalty(), mean)
