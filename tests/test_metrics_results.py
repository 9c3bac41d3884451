import json
import math

import pytest
import torch

from aae_tutorial import bench, metrics, results


def test_parzen_matches_closed_form_gaussian():
    torch.manual_seed(0)
    s = torch.randn(1, 5)  # one sample: the Parzen density is exactly N(s, sigma^2 I)
    x = torch.randn(50, 5)
    expected = torch.distributions.Normal(s, 0.7).log_prob(x).sum(1).double()
    assert torch.allclose(metrics.parzen_log_likelihood(s, x, 0.7), expected, atol=1e-5)
    # N identical samples give the same density as one
    assert torch.allclose(metrics.parzen_log_likelihood(s.repeat(30, 1), x, 0.7), expected, atol=1e-5)
    both = metrics.parzen_log_likelihood(s, x, [0.7, 1.3])
    assert both.shape == (2, 50) and torch.allclose(both[0], expected, atol=1e-5)


def test_parzen_two_point_mixture_and_sigma_selection():
    s = torch.tensor([[0.0], [2.0]])
    x = torch.tensor([[1.0]])
    sigma = 0.5
    density = 0.5 * 2 * math.exp(-1 / (2 * sigma**2)) / math.sqrt(2 * math.pi * sigma**2)
    assert metrics.parzen_log_likelihood(s, x, sigma).item() == pytest.approx(math.log(density))
    torch.manual_seed(0)
    best, scores = metrics.select_sigma(torch.randn(3000, 1), torch.randn(500, 1), [0.01, 0.3, 10.0])
    assert best == 0.3 and len(scores) == 3
    with pytest.raises(ValueError, match="positive"):
        metrics.parzen_log_likelihood(s, x, 0.0)
    with pytest.raises(ValueError, match="need samples"):
        metrics.parzen_log_likelihood(s, torch.zeros(3, 2), 1.0)


def test_mmd_separates_distributions():
    torch.manual_seed(0)
    a, b = torch.randn(500, 2), torch.randn(500, 2)
    assert abs(metrics.mmd(a, b)) < 0.02
    assert metrics.mmd(a, b + 2) > 0.3


def test_cluster_mapping_and_hungarian_on_known_cases():
    # 4 clusters over 2 labels: clusters 0,1 are mostly label 0; clusters 2,3 mostly label 1
    clusters_train = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    y_train = torch.tensor([0, 0, 1, 0, 0, 1, 1, 1, 1, 0])
    assert metrics.cluster_to_label(clusters_train, y_train, 4, num_classes=2).tolist() == [0, 0, 1, 1]
    clusters_test, y_test = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 1, 1])
    assert metrics.cluster_error(clusters_train, y_train, clusters_test, y_test, 4) == pytest.approx(25.0)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    permuted = torch.tensor([2, 2, 0, 0, 1, 1, 0])  # a relabelling with one mistake
    assert metrics.hungarian_accuracy(permuted, y, k=3, num_classes=3) == pytest.approx(600 / 7)
    assert metrics.error_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 0])) == 50.0
    assert metrics.confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), 2).tolist() == [[0, 1], [0, 1]]


def test_results_record_provenance_and_never_downgrade(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_RESULTS_DIR", str(tmp_path))
    prov = {"device": "cpu", "epochs": 3, "wall_time_s": 12.34}
    rec = results.record("x", "error (%)", [2.0, 4.0], seeds=[0, 1], mode="full", paper=1.9, **prov)
    saved = json.loads((tmp_path / "x.json").read_text())
    for field in results.FIELDS:
        assert field in saved
    assert saved["value"] == 3.0 and saved["std"] == pytest.approx(1.4142, abs=1e-4) and saved["mode"] == "full"
    results.record("x", "error (%)", [9.0], seeds=[0], mode="quick", **prov)
    assert results.load(tmp_path / "x.json")["value"] == 3.0  # a quick run keeps the paper-scale record
    assert "3 ± 1.4" in results.table([rec]) and "| 1.9 |" in results.table([rec])
    with pytest.raises(ValueError, match="one value per seed"):
        results.record("y", "m", [1.0], seeds=[0, 1], mode="quick", **prov)


def test_benchmark_runs_at_tiny_size():
    report = bench.run("cpu", steps=3, hidden=16, compile=False, check_epochs=0, log=lambda s: None)
    assert report["rows"][0]["speedup"] == 1.0
    assert {r["variant"] for r in report["rows"]} >= {"package fp32", "package bf16 autocast"}
    assert all(r["samples_per_s"] > 0 for r in report["rows"])


def test_latent_explorer_static_and_live():
    from aae_tutorial import widgets

    decode = lambda z: torch.sigmoid(z.sum(1, keepdim=True)).expand(-1, 784)  # brightness follows z1 + z2
    explorer = widgets.latent_explorer(decode, lim=2.0, n=5, title="t")
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].count("data:image/png;base64,") == 25 and 'max="4"' in bundle["text/html"]
    z1 = explorer.widget.children[1].children[0].children[0]
    image = explorer.widget.children[1].children[1]
    before = image.value
    z1.value = 1.5  # the live widget decodes on every change
    assert image.value != before
    with pytest.raises(ValueError, match="n must be"):
        widgets.latent_explorer(decode, n=1)
