import json

from aae_tutorial import experiments, trials


def write(folder, name, record):
    (folder / "full").mkdir(parents=True, exist_ok=True)
    (folder / "full" / f"{name}.json").write_text(json.dumps(record))


def test_each_change_is_compared_with_the_experiment_at_equal_epochs_on_validation(tmp_path):
    write(tmp_path, "exp", {"valid_curves": [[30.0, 25.0, 20.0, 10.0]], "value": 1.0})  # 10 only after epoch 3
    write(tmp_path, "exp_paper_recipe", {"valid_curves": [[40.0, 35.0, 38.0]], "value": 99.0})
    write(tmp_path, "exp_balance_sweep", {"swept": "balance", "precision": "fp32", "rows": [
        {"balance": 2.0, "valid_curve": [28.0, 22.0, 24.0], "epoch": 2, "clusters_used": 16},
        {"balance": 0.5, "valid_curve": [50.0, 45.0], "epoch": 2, "clusters_used": 9}]})  # too short: left out
    found = trials.rows("exp", 3, tmp_path)
    assert [(r["change"], r["valid"], r["epoch"]) for r in found] == [
        (None, 20.0, 3), ("the paper's recipe and networks", 35.0, 2), ("balance 2", 22.0, 2)]
    text = trials.table("exp", 3, "the chapter's settings", tmp_path)
    lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert lines[0].startswith("| none (the chapter's settings) | 20.00 | 3 |")
    assert lines[1] == "| balance 2 | 22.00 | 2 | +2.00 | fp32 | 16 |"  # what each run trained in, where recorded
    assert lines[0].endswith("| not recorded | – |")
    assert lines[2].startswith("| the paper's recipe and networks | 35.00 | 2 | +15.00 |")
    assert "99" not in text and "1.0" not in text  # the test values play no part
    assert "moves by 5.00 from one epoch to the next (median)" in text  # 30 -> 25 -> 20 within the 3 epochs


def test_no_records_give_no_rows(tmp_path):
    assert trials.rows("exp", 20, tmp_path) == []


def test_runs_that_count_no_categories_get_no_categories_column(tmp_path):
    write(tmp_path, "exp", {"valid_curves": [[30.0, 25.0]]})
    write(tmp_path, "exp_z_dim_sweep", {"swept": "z_dim", "rows": [{"z_dim": 10, "valid_curve": [20.0, 21.0],
                                                                    "epoch": 1}]})
    text = trials.table("exp", 2, "the chapter's settings", tmp_path)
    assert "| z_dim 10 | 20.00 | 1 | -5.00 | not recorded |" in text and "categories" not in text


def test_a_one_epoch_comparison_gives_no_swing(tmp_path):
    write(tmp_path, "exp", {"valid_curves": [[30.0, 25.0]]})
    assert trials.rows("exp", 1, tmp_path)[0]["swing"] is None
    assert "moves by" not in trials.table("exp", 1, "the chapter's settings", tmp_path)


def test_a_search_started_from_changed_settings_names_them_in_its_rows(tmp_path):
    write(tmp_path, "exp", {"valid_curves": [[30.0, 25.0]]})
    write(tmp_path, "exp_z_dim_10_adv_lr_sweep", {"swept": "adv_lr", "base": {"z_dim": 10}, "rows": [
        {"adv_lr": 5e-4, "valid_curve": [12.0, 11.0], "epoch": 2}]})
    assert [r["change"] for r in trials.rows("exp", 2, tmp_path)] == [None, "z_dim 10, adv_lr 0.0005"]


def test_each_departure_shows_its_measured_effect_at_equal_epochs_or_is_named_unmeasured(tmp_path, monkeypatch):
    monkeypatch.setattr(trials, "DEPARTURES", [
        ("semisupervised_100_labels", "style code z (dimensions)", "z_dim", "10", "z_dim 10", "a source"),
        ("semisupervised_100_labels", "batch norm in the encoder", "batch_norm", "off", "batch_norm 0", "none"),
        ("clustering_k16", "recipe and networks", "recipe", "paper", "the paper's recipe and networks", "s")])
    write(tmp_path, "semisupervised_100_labels", {"valid_curves": [[30.0, 20.0, 10.0]]})  # 10 only at epoch 3
    write(tmp_path, "semisupervised_100_labels_z_dim_sweep", {"swept": "z_dim", "precision": "fp32", "rows": [
        {"z_dim": 10, "valid_curve": [25.0, 12.0, 11.0], "epoch": 3}]})
    text = trials.departures_table(epochs=2, folder=tmp_path)
    shown = experiments.get("semisupervised_100_labels").settings["z_dim"]
    assert (f"| semi-supervised, 100 labels | style code z (dimensions) | {shown} | 10 | 20.00 → 12.00 (-8.00) | fp32 "
            "| a source |") in text  # the first 2 epochs of each, on validation
    assert "batch norm in the encoder |" not in text and "clustering, k = 16 | recipe" not in text
    assert ("Not measured at the paper's width yet: semi-supervised, 100 labels: batch norm in the encoder; "
            "clustering, k = 16: recipe and networks.") in text


def test_the_departures_name_settings_the_catalogue_has():
    for name, _, key, _, _, source in trials.DEPARTURES:
        assert key == "recipe" or key in experiments.get(name).settings, (name, key)
        assert source


def test_a_run_is_named_by_how_it_differs_from_the_catalogue_now(tmp_path):
    exp = experiments.get("semisupervised_100_labels")  # 10-D style, adversarial rate 5e-4 since 2026-12-07
    write(tmp_path, exp.name, {"valid_curves": [[9.0, 8.0]], "settings": {**exp.settings, "z_dim": 4},
                               "recipe": "course"})  # a record made at the earlier settings
    write(tmp_path, f"{exp.name}_z_dim_10_adv_lr_sweep", {
        "swept": "adv_lr", "base": {"z_dim": 10}, "settings": exp.settings, "recipe": "course", "rows": [
            {"adv_lr": exp.recipe.adv_lr, "valid_curve": [5.0, 4.0], "epoch": 2},
            {"adv_lr": 2e-4, "valid_curve": [7.0, 6.0], "epoch": 2}]})
    assert [r["change"] for r in trials.rows(exp.name, 2, tmp_path)] == ["adv_lr 0.0002, z_dim 4", None,
                                                                         "adv_lr 0.0002"]
