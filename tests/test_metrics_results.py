import json
import math
import re

import pytest
import torch

import aae_tutorial
from aae_tutorial import (bench, categorical, data, engine, experiments, files, history, metrics, recipes, results,
                          tables, train)
from aae_tutorial.categorical import CategoricalAAE


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
    for bad in (0.0, float("nan"), float("inf"), -1.0, []):
        with pytest.raises(ValueError, match="positive and finite"):
            metrics.parzen_log_likelihood(s, x, bad)
    with pytest.raises(ValueError, match="need samples"):
        metrics.parzen_log_likelihood(s, torch.zeros(3, 2), 1.0)


def test_mmd_separates_distributions():
    torch.manual_seed(0)
    a, b = torch.randn(500, 2), torch.randn(500, 2)
    assert abs(metrics.mmd(a, b)) < 0.02
    assert metrics.mmd(a, b + 2) > 0.3


def test_paper_cluster_labels_use_the_most_confident_validation_image():
    # 3 clusters, 4 validation images. Cluster 0 is most confident about image 2 (label 7), cluster 1 about image 0
    # (label 3), cluster 2 about image 3 (label 7). The majority rule would name them differently.
    proba = torch.tensor([[0.1, 0.8, 0.1], [0.5, 0.4, 0.1], [0.9, 0.05, 0.05], [0.2, 0.1, 0.7]])
    y_valid = torch.tensor([3, 5, 7, 7])
    assert metrics.paper_cluster_labels(proba, y_valid).tolist() == [7, 3, 7]
    majority = metrics.majority_cluster_labels(proba.argmax(1), y_valid, 3)
    assert majority.tolist() == [5, 3, 7]  # cluster 0 holds images 1 (5) and 2 (7): a tie goes to the lower label
    with pytest.raises(ValueError, match="need proba_valid"):
        metrics.paper_cluster_labels(proba, y_valid[:3])


def test_cluster_views_on_known_cases():
    clusters_train = torch.tensor([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    y_train = torch.tensor([0, 0, 1, 0, 0, 1, 1, 1, 1, 0])
    assert metrics.majority_cluster_labels(clusters_train, y_train, 4, n_classes=2).tolist() == [0, 0, 1, 1]
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    permuted = torch.tensor([2, 2, 0, 0, 1, 1, 0])  # a relabelling with one mistake
    assert metrics.hungarian_accuracy(permuted, y, n_clusters=3, n_classes=3) == pytest.approx(600 / 7)
    assert metrics.error_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 0])) == 50.0
    assert metrics.confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), 2).tolist() == [[0, 1], [0, 1]]
    assert metrics.clusters_used(torch.tensor([0] * 996 + [1] * 4 + [2] * 0), 3) == 1  # 0.4 % is below 0.5 %
    assert metrics.clusters_used(torch.tensor([0] * 990 + [1] * 5 + [2] * 5), 3) == 3
    with pytest.raises(ValueError, match="one non-empty shape"):
        metrics.error_rate(torch.tensor([1, 2]), torch.tensor([1]))


class Fixed(CategoricalAAE):
    """A categorical AAE whose q(y|x) is set by hand: the first pixels of x are the category logits."""

    def encode(self, x, noisy=False):
        return x[:, : self.n_classes] * 10, torch.zeros(len(x), self.z_dim)


def test_categorical_error_metrics_on_hand_made_cases():
    model = Fixed(3, 1, (4,))
    def images(categories):
        return torch.nn.functional.pad(torch.nn.functional.one_hot(torch.tensor(categories), 3).float(), (0, 781))
    x_test, y_test = images([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1])
    assert categorical.classification_error(model, x_test, y_test) == 25.0
    # Clusters named from validation: cluster 0 -> 4, 1 -> 4, 2 -> 1 (each by its most confident validation image).
    x_valid, y_valid = images([0, 1, 2]), torch.tensor([4, 4, 1])
    assert categorical.clustering_error(model, x_test, torch.tensor([4, 4, 1, 1]), x_valid, y_valid) == 0.0
    assert categorical.clustering_error(model, x_test, y_test, x_valid, y_valid) == 75.0


def run(name="r", mode="full", device="cpu", epochs=3, wall=10.0, metrics_=None):
    history = train.History(epochs, {}, metrics_ or {})
    return train.Run(name, {}, history, mode, device, epochs, wall)


def test_selected_epoch_is_the_lowest_validation_error():
    r = run(metrics_={"valid_error": [5.0, 3.0, 4.0, 3.0], "test_error": [1.0, 9.0, 0.5, 0.1]})
    assert history.selected_epoch(r) == 1  # the first minimum of the validation error, never the test error
    with pytest.raises(ValueError, match="logged no 'valid_error'"):
        history.selected_epoch(run(metrics_={"test_error": [1.0]}))


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AAE_RESULTS_DIR", str(tmp_path))
    return tmp_path


def test_record_carries_every_seeds_provenance(results_dir):
    rec = results.record("x", "error (%)", [2.0, 4.0], recipe=recipes.COURSE, seeds=[0, 1], runs=[run(wall=10.0), run(wall=12.5)],
                         paper=1.9, paper_std=0.1, selected_epochs=[3, 2])
    saved = json.loads((results_dir / "full" / "x.json").read_text())  # one folder per scale
    assert saved == rec and saved["value"] == 3.0 and saved["std"] == pytest.approx(1.4142, abs=1e-4)
    assert saved["wall_times_s"] == [10.0, 12.5] and saved["wall_time_s"] == 22.5 and saved["selected_epochs"] == [3, 2]
    assert saved["paper"] == 1.9 and saved["paper_std"] == 0.1 and saved["mode"] == "full"
    assert saved["recipe"] == "course" and saved["recipe_settings"]["optimiser"] == "adam"
    assert saved["code_version"] == results.code_version()
    assert not list(results_dir.rglob("*.tmp"))


def test_an_experiment_has_one_record_per_scale_whichever_road_wrote_it(results_dir):
    results.record("x", "m", [3.0], recipe=recipes.COURSE, seeds=[0], runs=[run()])
    results.record("x", "m", [9.0], recipe=recipes.COURSE, seeds=[0], runs=[run(mode="quick")])
    assert results.load(results_dir / "full" / "x.json")["value"] == 3.0  # a quick run never touches a full record
    assert results.load(results_dir / "quick" / "x.json")["value"] == 9.0
    assert results.record_path("x", "quick") == results_dir / "quick" / "x.json"  # where the run command writes too
    results.record("x", "m", [1.0], recipe=recipes.COURSE, seeds=[0], runs=[run()])  # a new full run replaces it
    assert results.load(results_dir / "full" / "x.json")["value"] == 1.0
    assert sorted(p.relative_to(results_dir).as_posix() for p in results_dir.rglob("*.json")) == [
        "full/x.json", "quick/x.json"]


@pytest.mark.parametrize("kwargs, message", [
    ({"experiment": "../x"}, "experiment name"),
    ({"experiment": "a/b"}, "experiment name"),
    ({"runs": [run(mode="Quick")]}, "mode must be one of"),
    ({"values": [float("nan")]}, "must be finite"),
    ({"values": [1.0, 2.0]}, "one value and one run per seed"),
    ({"runs": [run(), run(device="cuda")], "values": [1.0, 2.0], "seeds": [0, 1]}, "share their device"),
    ({"value": 0.5}, "may not replace standard ones"),
    ({"paper": float("inf")}, "paper's value must be finite"),
])
def test_record_refuses_what_would_forge_or_lose_a_result(results_dir, kwargs, message):
    args = {"experiment": "x", "metric": "m", "values": [1.0], "seeds": [0], "runs": [run()],
            "recipe": recipes.COURSE, **kwargs}
    with pytest.raises(ValueError, match=message):
        results.record(args.pop("experiment"), args.pop("metric"), args.pop("values"), **args)
    assert not list(results_dir.iterdir())


def test_record_needs_a_recipe_and_tables_show_it_where_rows_differ(results_dir):
    with pytest.raises(TypeError, match="recipe must be"):
        results.record("x", "m", [1.0], seeds=[0], runs=[run()], recipe="paper")
    ours = results.record("x", "m", [1.0], seeds=[0], runs=[run(mode="quick")], recipe=recipes.COURSE,
                          clusters_used=[15])
    theirs = results.record("y", "m", [2.0], seeds=[0], runs=[run(mode="quick")], recipe=recipes.PAPER)
    assert theirs["recipe"] == "paper" and theirs["recipe_settings"]["optimiser"] == "sgd"
    text = results.table([ours, theirs], columns=[("used", "clusters_used")])
    assert "| experiment | metric | paper | ours | used | recipe | wall time |" in text
    assert "| x | m | – | 1 | 15 | course |" in text and "| y | m | – | 2 | – | paper |" in text


def test_corrupt_results_file_is_named(results_dir):
    (results_dir / "quick").mkdir()
    (results_dir / "quick" / "bad.json").write_text('{"experiment": ')
    with pytest.raises(results.ResultsFileError, match=r"bad\.json"):
        results.load_all()
    (results_dir / "quick" / "bad.json").write_text("[1, 2]")
    with pytest.raises(results.ResultsFileError, match=r"bad\.json does not hold a JSON object"):
        results.load_all()


def test_tables_pad_rows_and_render_reference_rows(results_dir):
    rec = results.record("x", "error (%)", [2.0, 4.0], recipe=recipes.COURSE, seeds=[0, 1],
                         runs=[run(mode="quick"), run(mode="quick")], paper=1.9, paper_std=0.1)
    other = results.record("y", "error (%)", [5.0], recipe=recipes.COURSE, seeds=[0], runs=[run(mode="quick", epochs=7)])
    text = results.table([rec, other], "T", reference=[("GAN", "225 ± 2")])
    lines = text.splitlines()
    assert lines[0] == "**T**" and lines[2] == "| experiment | metric | paper | ours | epochs | seeds | wall time |"
    assert all(line.count("|") == 8 for line in lines[2:6])  # mode and device never change: moved to the note
    assert lines[-1].startswith("Ours: recipe course, mode quick, device cpu. Wall time: all seeds together. ")
    assert "the public reproduction that transcribes its appendix trains 2,000–5,000 epochs" in lines[-1]
    assert "| 1.9 ± 0.1 | 3 ± 1.41 | 3 | 2 | 20 s |" in text and "| GAN (reported in the literature) |  | 225 ± 2 |" in text
    assert tables.markdown(["a", "b"], [["x|y"]]) == "| a | b |\n|---|---|\n| x\\|y |  |"
    with pytest.raises(ValueError, match="wider than the header"):
        tables.markdown(["a"], [[1, 2]])


def test_benchmark_rows_are_consistent_at_tiny_size():
    report = bench.run("cpu", steps=3, hidden=16, compile=False, check_epochs=0, log=lambda s: None)
    rows = {(r["model"], r["variant"]): r for r in report["rows"]}
    ref = rows["aae", "reference (DataLoader + per-batch .to)"]
    assert set(rows) >= {("aae", "package fp32"), ("aae", "package bf16 autocast"), ("categorical", "package fp32")}
    graph_row = rows["aae", "package fp32 + whole-step CUDA graph"]
    assert graph_row == {"model": "aae", "variant": "package fp32 + whole-step CUDA graph",
                         "unavailable": "CUDA graphs need a CUDA GPU"}  # reported, not dropped
    for (model, _), r in rows.items():
        if "unavailable" in r:
            continue
        members = r["members"]
        assert r["samples_per_s"] > 0 and r["s_per_epoch"] == pytest.approx(60_000 * members / r["samples_per_s"],
                                                                             rel=1e-2, abs=0.006)  # 2 decimals
        if model == "aae":  # speed-ups are against the reference loop of the same model only
            assert r["speedup"] == pytest.approx(r["samples_per_s"] / ref["samples_per_s"], rel=1e-2)
        else:
            assert "speedup" not in r
    text = bench.markdown(report)
    assert "| aae | package fp32 + whole-step CUDA graph | unavailable (CUDA graphs need a CUDA GPU) |  |  |" in text
    assert f"| aae | reference (DataLoader + per-batch .to) | {ref['samples_per_s']:,.0f} |" in text
    for model in ("aae", "categorical"):  # the batched ensemble is measured on every device, its graph on CUDA only
        assert rows[model, f"package fp32, batched ensemble of {bench.ENSEMBLE}"]["members"] == bench.ENSEMBLE
        assert "unavailable" in rows[model, f"package fp32 + whole-step CUDA graph, batched ensemble of {bench.ENSEMBLE}"]
    ens = rows["aae", f"package fp32, batched ensemble of {bench.ENSEMBLE}"]
    assert f"{ens['samples_per_s']:,.0f} ({ens['samples_per_s'] / bench.ENSEMBLE:,.0f} per model)" in text
    bf16_row = rows["aae", "package bf16 autocast"]
    assert ("unavailable" in bf16_row) != engine.bf16_supported("cpu")  # measured only where the CPU has bf16 units


def test_semisupervised_step_draws_a_fresh_full_labelled_minibatch_every_step():
    seen = []

    class Recorder(CategoricalAAE):
        def train_step(self, x, x_labelled=None, y_labelled=None):
            seen.append((len(x), y_labelled.clone()))
            return {}

    model = Recorder(10, 2, (4,))
    x = torch.rand(1000, 784)
    y_l = torch.arange(10)
    x_l = torch.rand(10, 784)
    torch.manual_seed(0)
    step = categorical.semisupervised_step(model, x, data.LabelledSet(x_l, y_l))
    for idx in train.minibatches(1000, 100, "cpu"):
        step(idx)
    assert len(seen) == 10 and all(n == 100 and len(y) == 100 for n, y in seen)  # never truncated to 10 labels
    assert not torch.equal(seen[0][1], seen[1][1])  # a new labelled draw every step
    assert set(torch.cat([y for _, y in seen]).tolist()) == set(range(10))


def test_error_tracker_logs_classification_or_clustering_views():
    model = Fixed(3, 1, (4,))
    def images(categories):
        return torch.nn.functional.pad(torch.nn.functional.one_hot(torch.tensor(categories), 3).float(), (0, 781))
    x, y = images([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1])
    assert categorical.error_tracker(model, {"test": (x, y)})(0) == {"test_error": 25.0}
    x_valid, y_valid = images([0, 1, 2] + [0] * 997), torch.tensor([4, 4, 1] + [4] * 997)
    logged = categorical.error_tracker(model, {"test": (x, torch.tensor([4, 4, 1, 1]))}, (x_valid, y_valid))(0)
    assert logged["test_error"] == 0.0 and logged["clusters_used"] == 1  # categories 1 and 2 hold 0.1 % each
    assert 0.0 <= logged["d_y_on_one_hot"] <= 1.0


def test_content_follows_label_counts_what_the_judge_reads_back():
    from aae_tutorial import judge

    reader = judge.DigitClassifier((8,))
    reader.predict = lambda images: images[:, 0].round().long()  # reads the digit from the first pixel, /10
    styles = torch.zeros(5, 3)
    follows = judge.content_follows_label(lambda z, y: torch.nn.functional.pad(y.float().unsqueeze(1), (0, 783)),
                                          styles, reader)
    ignores = judge.content_follows_label(lambda z, y: torch.full((len(y), 784), 3.0), styles, reader)
    assert follows == 100.0 and ignores == pytest.approx(10.0)  # a decoder that ignores y scores chance


def test_a_corrupt_record_is_set_aside_with_a_warning_not_fatal(results_dir):
    quick = results_dir / "quick"
    quick.mkdir()
    (quick / "x.json").write_text('{"experiment": ')
    with pytest.warns(UserWarning, match=r"x\.json.*moved it to .*x\.json\.[0-9a-f]{8}\.corrupt"):
        rec = results.record("x", "m", [1.0], seeds=[0], runs=[run(mode="quick")], recipe=recipes.COURSE)
    assert results.load(quick / "x.json") == rec and len(list(quick.glob("x.json.*.corrupt"))) == 1
    (quick / "x.json").write_text("[]")  # a second broken record is set aside beside the first
    with pytest.warns(UserWarning, match="moved it to"):
        results.record("x", "m", [1.0], seeds=[0], runs=[run(mode="quick")], recipe=recipes.COURSE)
    assert len(list(quick.glob("x.json.*.corrupt"))) == 2


def test_reserved_and_overlong_names_and_huge_values_are_refused(results_dir):
    for name in ("quick_course", "gpu_check_h200", "bench_cpu"):
        with pytest.raises(ValueError, match="is reserved for the course's own files"):
            results.record(name, "m", [1.0], seeds=[0], runs=[run()], recipe=recipes.COURSE)
    with pytest.raises(ValueError, match="at most 160 characters"):
        results.record("x" * 300, "m", [1.0], seeds=[0], runs=[run()], recipe=recipes.COURSE)
    with pytest.raises(ValueError, match="too large"):
        results.record("x", "m", [10**400], seeds=[0], runs=[run()], recipe=recipes.COURSE)
    assert not list(results_dir.iterdir())


def test_load_all_skips_files_that_are_not_records(results_dir):
    rec = results.record("x", "m", [1.0], seeds=[0], runs=[run(mode="quick")], recipe=recipes.COURSE)
    results.write_json(results_dir / "quick_course.json", {"chapters": []})
    results.write_json(results_dir / "quick" / "x_lr_sweep.json", {"experiment": "x_lr_sweep", "rows": []})
    results.write_json(results_dir / "quick" / "notes.json", {"hello": 1})
    with pytest.warns(UserWarning, match="notes.json is not an experiment record"):
        assert results.load_all(folder=results_dir) == [rec]


def test_records_are_read_from_the_results_folder_first_then_from_the_committed_ones(results_dir):
    fresh = results.record("prior_match_gaussian_aae", "m", [99.0], seeds=[0], runs=[run(mode="quick")],
                           recipe=recipes.COURSE)
    assert results.paths("quick/prior_match_gaussian_[av]ae.json") == [
        results_dir / "quick" / "prior_match_gaussian_aae.json",
        results.BOOK_RESULTS / "quick" / "prior_match_gaussian_vae.json"]
    assert results.load_all("prior_match_gaussian_aae")[0] == fresh  # this run's record hides the committed one
    assert "99" in results.headline_table({"prior_match_gaussian_aae": "AAE"})
    assert results.roots() == [results_dir, results.BOOK_RESULTS]


def test_concurrent_writers_of_one_record_leave_one_whole_record_per_scale(results_dir):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_write_record, args=(str(results_dir), mode, value))
               for mode, value in [("quick", 9.0)] * 4 + [("full", 3.0)] + [("quick", 8.0)] * 4]
    for w in writers:
        w.start()
    for w in writers:
        w.join(30)
        assert w.exitcode == 0
    assert results.load(results_dir / "full" / "x.json")["value"] == 3.0  # no quick writer touches it
    assert results.load(results_dir / "quick" / "x.json")["value"] in (9.0, 8.0)  # one writer's whole record
    assert not list(results_dir.rglob("*.tmp"))


def _write_record(folder: str, mode: str, value: float) -> None:
    import os

    os.environ["AAE_RESULTS_DIR"] = folder
    results.record("x", "m", [value], seeds=[0], runs=[run(mode=mode)], recipe=recipes.COURSE)


def paper_width_record(folder, name: str, value: float, epochs: int = 60) -> dict:
    rec = {"experiment": name, "metric": "error (%)", "value": value, "std": None, "mode": "full", "scale": "full",
           "hidden": [1000, 1000], "epochs": epochs, "selected_epochs": [41], "device": "cpu", "precision": "bf16",
           "wall_time_s": 1800.0, "paper": 1.6, "paper_std": 0.08}
    (folder / "full").mkdir(parents=True, exist_ok=True)
    results.write_json(folder / "full" / f"{name}.json", rec)
    return rec


def test_headline_table_names_results_in_words_with_their_scale_and_gap(results_dir):
    results.record("x", "error (%)", [2.0], seeds=[0], runs=[run(mode="quick")], recipe=recipes.COURSE, paper=1.9)
    text = results.headline_table({"x": "the x experiment, error %"}, "T")
    assert "| the x experiment, error % | 1.9 | 2 | +0.1 | quick | cpu | 3 |" in text and "`x`" in text
    assert "No paper-width record exists yet" in text
    missing = results.headline_table({"missing": "a result nobody recorded"}, folder=results_dir / "elsewhere")
    assert "| a result nobody recorded | – | not run yet |" in missing and "elsewhere/" in missing
    paper_width_record(results_dir, "x", 2.1)
    text = results.headline_table({"x": "the x experiment, error %"}, "T")
    assert "| the x experiment, error % | 1.6 ± 0.08 | 2.1 | +0.5 | paper width (bf16) | cpu | 60 |" in text
    assert "1 of 1 rows come from a paper-width run" in text


def test_a_paper_width_record_shows_beside_the_quick_one_with_its_epochs(results_dir):
    quick = results.record("y", "error (%)", [6.2], seeds=[0], runs=[run(mode="quick")], recipe=recipes.COURSE,
                           paper=1.6)
    assert "paper width" not in results.table([quick])
    paper_width_record(results_dir, "y", 2.1)
    text = results.table([quick])
    assert "| experiment | metric | paper | paper width | ours |" in text
    assert "| 1.6 | 2.1 (60 ep) | 6.2 |" in text
    assert "`y`: width 1000, cpu, bf16, 60 epochs (epoch 41 picked on validation), 30 min" in text


@pytest.mark.parametrize("extra, field", [({"selected": [1.0, float("nan")]}, "selected"),
                                          ({"share": torch.tensor(0.5)}, "share")])
def test_a_record_names_an_extra_field_json_cannot_hold(extra, field):
    with pytest.raises(ValueError, match=f"extra field '{field}' must be plain JSON"):
        results.record("x", "m", [3.0], recipe=recipes.COURSE, seeds=[0], runs=[run()], **extra)


def test_a_record_refuses_a_non_finite_wall_time():
    with pytest.raises(ValueError, match="wall times must be finite"):
        results.record("x", "m", [3.0], recipe=recipes.COURSE, seeds=[0], runs=[run(wall=float("nan"))])


def test_tables_name_experiments_in_words_and_give_the_record_ids_below(results_dir):
    rec = results.record("prior_match_gaussian_aae_paper_recipe", "MMD²", [0.02], recipe=recipes.PAPER, seeds=[0],
                         runs=[run()])
    text = results.table([rec])
    assert "| match to the prior: gaussian AAE, paper's recipe | MMD² |" in text
    assert "Records in `book/results/`, row by row: `prior_match_gaussian_aae_paper_recipe`." in text
    assert results.readable("label_prior_mixture-10k-labels") == "label-conditioned prior: mixture 10k labels"


def test_the_paper_width_table_gives_each_runs_cost(results_dir):
    assert "(no paper-width run recorded yet)" in results.paper_width_table(results.paper_width_records(results_dir))
    rec = paper_width_record(results_dir, "semisupervised_1000_labels", 2.1)
    rec.update(threads=1, epochs_planned=60, seeds=[0])
    results.write_json(results_dir / "full" / "semisupervised_1000_labels.json", rec)
    text = results.paper_width_table(results.paper_width_records(results_dir))
    assert "| semi-supervised, 1000 labels | 1.6 ± 0.08 | 2.1 | 0 | 1000 | cpu, bf16, 1 thread | 60 of 60 | 41 | 30 min | 30 s |" in text


def test_a_chapter_line_sets_quick_beside_paper_width_with_epochs(results_dir):
    quick = results.record("semisupervised_7_labels", "error (%)", [6.2], seeds=[0], runs=[run(mode="quick")],
                           recipe=recipes.COURSE, paper=1.6, paper_std=0.08)
    assert results.width_line(quick) == ("semi-supervised, 7 labels: 6.2 on this page (3 epochs); no paper-width "
                                         "run yet; the paper: 1.6 ± 0.08")
    paper_width_record(results_dir, "semisupervised_7_labels", 2.1)
    assert results.width_line(quick).startswith("semi-supervised, 7 labels: 2.1 at the paper's width (60 epochs on "
                                                "cpu, bf16, epoch 41 picked on validation) vs 6.2 on this page")


def test_the_searches_of_sweep_are_not_taken_for_experiments_records(results_dir):
    paper_width_record(results_dir, "clustering_k16", 28.1)
    results.write_json(results_dir / "full" / "clustering_k16_balance_sweep.json", {"swept": "balance", "rows": []})
    assert [r["experiment"] for r in results.paper_width_records(results_dir)] == ["clustering_k16"]


def test_separation_pairs_seeds_and_measures_the_gap_in_pooled_standard_deviations(results_dir):
    a = {"seeds": [0, 1, 2], "values": [1.0, 2.0, 3.0], "value": 2.0, "std": 1.0}
    b = {"seeds": [0, 1, 2], "values": [2.0, 1.5, 5.0], "value": 3.0, "std": 1.0}
    assert results.separation(a, b) == (2, 3, 1.0)
    with pytest.raises(ValueError, match="same two or more seeds"):
        results.separation(a, {**b, "seeds": [0, 1, 3]})
    a |= {"experiment": "semisupervised_7_labels", "epochs": 3}
    b |= {"experiment": "semisupervised_7_labels_labels_only", "epochs": 3}
    assert results.seeds_versus(a, b) == (
        "semi-supervised, 7 labels (2 ± 1) vs semi-supervised, 7 labels, labelled images only (3 ± 1), seeds 0, 1, 2, "
        "3 epochs: lower on 2 of 3 seeds; the means are 1.0 pooled standard deviations apart")


def test_a_results_folder_that_cannot_be_written_is_named_with_its_remedy(results_dir, monkeypatch):
    def denied(*args, **kwargs):  # what a read-only folder answers (root would ignore a chmod here)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", denied)
    with pytest.raises(files.UnwritableFolder, match=f"cannot write {results_dir}/full/x.json: the folder .* refuses new "
                                                    "files \\(Permission denied\\).*AAE_RESULTS_DIR"):
        results.record("x", "m", [1.0], seeds=[0], runs=[run()], recipe=recipes.COURSE)


def test_a_results_setting_that_names_a_file_is_refused_with_its_remedy(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("AAE_RESULTS_DIR", str(tmp_path / "a-file"))
    with pytest.raises(files.UnwritableFolder, match="a-file is a file, not a folder.*AAE_RESULTS_DIR"):
        results.record("x", "m", [1.0], seeds=[0], runs=[run()], recipe=recipes.COURSE)


def test_a_headline_row_whose_file_is_not_a_record_names_the_file_and_the_remedy(results_dir):
    (results_dir / "quick").mkdir()
    results.write_json(results_dir / "quick" / "x.json", {"hello": 1})
    with pytest.raises(results.ResultsFileError, match=r"x.json is not an experiment record \(it has no "
                                                       "experiment, metric, mode, value\\): move it out"):
        results.headline_table({"x": "the x experiment"}, folder=results_dir)


def test_every_record_says_what_code_made_it(monkeypatch):
    version = results.code_version()
    assert re.fullmatch(r"[0-9a-f]{10}\+?", version), version  # this checkout's commit, "+" if files changed
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")
    monkeypatch.setattr(results.subprocess, "run", no_git)
    assert results.code_version() == f"aae_tutorial {aae_tutorial.__version__}"  # an installed package


def test_both_roads_write_one_schema(results_dir):
    from types import SimpleNamespace

    chapter = results.record("x", "m", [2.0], recipe=recipes.COURSE, seeds=[0], runs=[run()])
    assert list(chapter)[:len(results.SCHEMA)] == list(results.SCHEMA) and chapter["selected_epochs"] == [3]
    assert chapter["precision"] == "fp32"
    seed = SimpleNamespace(seed=0, test={"value": 2.0}, epochs=3, selected_epoch=2, wall_time_s=5.0,
                           history=train.History(3, {}, {"valid": [3.0, 2.0, 2.5]}))
    command = results.of_seeds(experiments.get("semisupervised_100_labels"), "quick", [seed], hidden=(16, 16),
                               epochs_planned=3, device="cpu", precision="fp32")
    assert list(command)[:len(results.SCHEMA)] == list(results.SCHEMA) and command["selected_epochs"] == [2]


def test_every_committed_record_has_the_schema():
    recs = [p for p in results.BOOK_RESULTS.rglob("*.json") if not p.stem.startswith(results.RESERVED)]
    experiment_records = [r for r in map(results.load, recs) if "rows" not in r]
    assert len(experiment_records) > 30
    for rec in experiment_records:
        assert list(rec)[:len(results.SCHEMA)] == list(results.SCHEMA), rec["experiment"]


def test_an_old_record_is_converted_not_retyped(tmp_path):
    old = {"experiment": "x", "metric": "m", "value": 3.0, "std": None, "values": [3.0], "seeds": [0], "mode": "quick",
           "device": "cpu", "epochs": 3, "wall_time_s": 9.0, "wall_times_s": [9.0], "paper": None, "paper_std": None,
           "recipe": "course", "recipe_settings": {}, "torch": "2.4.1", "date": "2026-12-01", "batch_norm": True}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(old))
    assert results.convert(path) and not results.convert(path)  # once: then it has the schema
    new = json.loads(path.read_text())
    assert {k: new[k] for k in old} == old and list(new)[:len(results.SCHEMA)] == list(results.SCHEMA)
    assert (new["precision"], new["selected_epochs"], new["code_version"]) == ("fp32", None, None)
    del old["device"]
    path.write_text(json.dumps(old))
    with pytest.raises(results.ResultsFileError, match="lacks device, which a conversion cannot know"):
        results.convert(path)
