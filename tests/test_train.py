import pytest
import torch

from aae_tutorial import mode, nets, train


def test_run_mode(monkeypatch):
    monkeypatch.setenv("AAE_MODE", "full")
    assert mode.run_mode().full and mode.run_mode().pick(quick=1, full=2) == 2
    monkeypatch.setenv("AAE_MODE", "Quick ")
    assert mode.run_mode().name == "quick"
    monkeypatch.setenv("AAE_MODE", "fast")
    with pytest.raises(ValueError, match="AAE_MODE must be one of"):
        mode.run_mode()
    monkeypatch.delenv("AAE_MODE")
    assert mode.run_mode().name == ("full" if torch.cuda.is_available() else "quick")
    assert "set AAE_MODE" in str(mode.run_mode())


def test_minibatches_cover_every_index_once():
    batches = list(train.minibatches(1000, 100, "cpu"))
    assert len(batches) == 10 and torch.equal(torch.cat(batches).sort().values, torch.arange(1000))
    with pytest.raises(ValueError, match="batch_size"):
        list(train.minibatches(10, 100, "cpu"))


def _tiny_autoencoder(x):
    enc, dec = nets.encoder(2, (32,)), nets.decoder(2, (32,))
    opt = train.adam([*enc.parameters(), *dec.parameters()], lr=1e-2)

    def step(idx):
        loss = nets.reconstruction_loss(dec(enc(x[idx])), x[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss}

    return enc, dec, step


def test_loss_decreases_on_a_small_batch():
    torch.manual_seed(0)
    prototypes = (torch.rand(4, 784) > 0.7).float()  # 4 patterns: compressible into a 2-D code
    x = prototypes[torch.arange(200) % 4]
    _, _, step = _tiny_autoencoder(x)
    history = train.fit(step, len(x), epochs=15, batch_size=50)
    assert history.epochs == 15 and len(history.losses["loss"]) == 15
    assert history.losses["loss"][-1] < 0.5 * history.losses["loss"][0]
    with pytest.raises(ValueError, match="epochs"):
        train.fit(step, len(x), epochs=0)


def test_train_or_load_skips_training_when_checkpoint_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    x = torch.rand(100, 784)
    enc, dec, step = _tiny_autoencoder(x)
    quick = mode.RunMode("quick", "test")
    calls = []

    def fit_once():
        calls.append(1)
        return train.fit(step, len(x), epochs=2, batch_size=50)

    first = train.train_or_load("tiny", {"a": 1}, {"enc": enc, "dec": dec}, fit_once, quick, "cpu")
    assert not first.from_checkpoint and calls == [1]
    assert not list(tmp_path.rglob("*.tmp"))  # written atomically, nothing left behind
    enc2, dec2, _ = _tiny_autoencoder(x)
    again = train.train_or_load("tiny", {"a": 1}, {"enc": enc2, "dec": dec2}, fit_once, quick, "cpu")
    assert again.from_checkpoint and calls == [1]
    assert again.history.losses == first.history.losses and again.wall_time_s == first.wall_time_s
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), enc2.state_dict().values()))
    train.train_or_load("tiny", {"a": 2}, {"enc": enc2, "dec": dec2}, fit_once, quick, "cpu")
    assert calls == [1, 1]  # another config never reuses the checkpoint


def test_checkpoints_load_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"modules": {}, "meta": {"f": print}}, path)  # a pickled function: code, not weights
    with pytest.raises(Exception):
        train.load_checkpoint(path, {})


def test_pick_device_and_seeding():
    assert train.pick_device().type in ("cuda", "mps", "cpu")
    train.seed_everything(7)
    a = torch.rand(3)
    train.seed_everything(7)
    assert torch.equal(a, torch.rand(3))
