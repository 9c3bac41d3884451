"""Each chapter's headline claim, checked against two sets of records: the ones committed in ``book/results/``, and
the ones this test session's notebooks just made from cold or warm weights (the scratch folder of ``scratch``).

The book says these things in its prose; these tests fail when the runs stop showing them. A claim must hold on a
fresh run too, at any thread count, so none rests on the last digits of one run. Where a target cannot be met in
quick mode, the chapter says so in one sentence, and the test checks that the record agrees with that sentence
instead.
"""
import json
from collections.abc import Callable
from pathlib import Path

import pytest

import scratch
from aae_tutorial import experiments, recipes, results

BOOK = Path(__file__).resolve().parents[1] / "book"
RESULTS = BOOK / "results"
FRESH = Path(scratch.SCRATCH)
#: The quick records, one per experiment: the chapters' (the run command's searches, which have no value, left out).
EXPERIMENTS = sorted(p for p in (RESULTS / "quick").glob("*.json") if "value" in json.loads(p.read_text()))


def record(experiment: str, root: Path = RESULTS) -> dict:
    return json.loads((root / "quick" / f"{experiment}.json").read_text())


@pytest.fixture(params=["committed", pytest.param("fresh", marks=pytest.mark.fresh_records)])
def made(request) -> Callable[[str], dict]:
    """The record of an experiment, committed or made by this session's notebooks. The fresh ones are checked once
    the notebooks have run (they are collected last); where no notebook ran in this session, they are skipped."""
    if request.param == "committed":
        return record
    if not any(FRESH.glob("quick/*.json")):
        pytest.skip("no notebook ran in this session, so it made no records (run the whole suite)")
    return lambda experiment: record(experiment, FRESH)


def most(used: int, k: int) -> bool:
    """"Most of its k categories": more than half of them, what the chapters' prose says."""
    return used > k / 2


def markdown_of(chapter: str) -> str:
    notebook = json.loads((BOOK / f"{chapter}.ipynb").read_text())
    return "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")


def test_there_are_experiment_records():
    assert len(EXPERIMENTS) >= 20


NAMED = recipes.NAMED


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_record_carries_the_recipe_the_catalogue_gives_it(path):
    rec = json.loads(path.read_text())
    assert rec["recipe"] in NAMED, rec.get("recipe")
    assert rec["recipe_settings"] == NAMED[rec["recipe"]].describe()
    if rec["experiment"] in experiments.CATALOGUE:
        exp = experiments.get(rec["experiment"])
        assert rec["recipe"] == exp.recipe.name
        assert rec.get("settings", exp.settings) == exp.settings  # a record made at other settings is not this one's


def outputs_of(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "\n".join(o.get("data", {}).get("text/markdown", "") if isinstance(o.get("data", {}).get("text/markdown"), str)
                     else "".join(o.get("data", {}).get("text/markdown", [])) for c in cells for o in c.get("outputs", []))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_committed_record_is_the_value_the_book_shows(path):
    rec = json.loads(path.read_text())
    shown = "\n".join(outputs_of(nb) for nb in BOOK.glob("*.ipynb"))
    row = f"| {results.readable(rec['experiment'])} | {rec['metric']} |"
    lines = [line for line in shown.splitlines() if line.startswith(row)]
    assert lines, f"no table in the book shows {rec['experiment']}"
    assert all(f"| {results._fmt(rec['value'], rec['std'])} |" in line for line in lines), lines


@pytest.mark.parametrize("ours, paper_recipe", [
    ("prior_match_gaussian_aae", "prior_match_gaussian_aae_paper_recipe"),  # chapter 3
    ("semisupervised_100_labels", "semisupervised_100_labels_paper_recipe"),  # chapter 6
    ("clustering_k16", "clustering_k16_paper_recipe"),  # chapter 7
])
def test_the_paper_recipe_ran_beside_the_course_recipe_at_equal_epochs(ours, paper_recipe):
    course, paper = record(ours), record(paper_recipe)
    assert course["recipe"] == experiments.get(ours).recipe.name and paper["recipe"] == "paper"
    assert course["mode"] == paper["mode"] and course["epochs"] == paper["epochs"]
    assert paper["paper"] is None  # a paper-recipe run never stands in the paper's column


@pytest.mark.parametrize("prior", ["gaussian", "mixture"])
def test_ch3_the_aae_matches_the_prior_better_than_the_vae_scored_on_samples(prior, made):
    aae, vae = made(f"prior_match_{prior}_aae"), made(f"prior_match_{prior}_vae")
    assert vae["scored_on"] == "samples of q(z|x)"
    assert aae["value"] < vae["value"], (aae["value"], vae["value"])


def test_ch4_codes_land_in_their_component_with_the_papers_label_budget(made):
    rec = made("label_prior_mixture-10k-labels")
    # The page's claim: "most test codes" land in their own digit's component, "well above chance (10 %)". Cold runs
    # of this quick model vary with the thread count: 85.35 % (the committed record), 68.79 % (a fresh clone at 2
    # threads, 2026-12-07), so the test asks for what the page says, a majority, not the 7x chance it once asked.
    assert rec["value"] > 50 and rec["value"] >= 5 * rec["chance"]
    assert made("label_prior_mixture-all-labels")["value"] > 50  # "with all labels and with the paper's 10k alike"


def test_ch4_the_rate_was_chosen_on_validation():
    sweep = json.loads((RESULTS / "quick" / "label_prior_mixture-10k-labels_adv_lr_sweep.json").read_text())
    assert sweep["chosen_on"].startswith("the validation images")
    assert recipes.COURSE_LABELS.adv_lr == sweep["chosen"] == max(sweep["rows"], key=lambda r: r["valid_best"])["adv_lr"]


def test_ch5_content_follows_the_label_at_the_chapters_rate(made):
    rec = made("content_follows_label_05_supervised")
    assert rec["value"] >= 5 * rec["chance"] and rec["value"] >= 2 * rec["adv_lr_2e_4_share"]


def test_ch6_content_follows_y_with_the_4d_style_and_less_with_the_papers_10d(made):
    rec = made("content_follows_label_06_semisupervised")
    assert rec["style_dim"] == experiments.get("semisupervised_all_labels").settings["z_dim"] == 10
    assert rec["style_dim_4_share"] >= 5 * rec["chance"]
    assert rec["style_dim_4_share"] >= 1.25 * rec["value"]  # the measured effect of the style size the chapter names


@pytest.mark.parametrize("labels", ["100"])  # 1000 labels: over three seeds, below
def test_ch6_the_semisupervised_aae_beats_the_labels_only_baseline(labels, made):
    aae, alone = made(f"semisupervised_{labels}_labels"), made(f"semisupervised_{labels}_labels_labels_only")
    assert aae["value"] < alone["value"], (aae["value"], alone["value"])


def test_ch7_the_recipe_uses_most_categories_and_the_page_states_the_error_gap(made):
    rec = made("clustering_k16")
    assert "uses most categories" in markdown_of("07_clustering")
    assert all(most(used, 16) for used in rec["clusters_used"]), rec["clusters_used"]
    if rec["value"] > 25.0:  # the quick-mode target is missed: the chapter must say so, and truly
        assert "its error stays above 25 %" in markdown_of("07_clustering")


def test_ch8_the_unsupervised_map_uses_most_of_its_heads(made):
    assert "keeps most of its 20 clusters in use" in markdown_of("08_dimensionality_reduction")
    assert all(most(used, 20) for used in made("dimred_2d_unsupervised")["clusters_used"])


WIDE = sorted(p for p in (RESULTS / "full").glob("*.json") if not p.stem.endswith("_sweep"))  # not --sweep's searches


@pytest.mark.parametrize("path", WIDE, ids=lambda p: p.stem)
def test_every_paper_width_record_says_how_it_ran_and_picked_its_epoch_on_validation(path):
    rec = json.loads(path.read_text())
    exp = experiments.get(rec["experiment"])
    assert rec["mode"] == "full" and min(rec["hidden"]) >= 1000 and rec["device"] and rec["precision"]
    assert rec["recipe"] == exp.recipe.name and rec["paper"] == exp.paper
    for curve, picked in zip(rec["valid_curves"], rec["selected_epochs"]):
        assert len(curve) == rec["epochs"] <= rec["epochs_planned"]
        best = max(curve) if exp.higher_is_better else min(curve)
        assert curve[picked - 1] == best  # the epoch the validation images chose, never the test set


@pytest.mark.parametrize("labels", ["100", "1000", "all"])
def test_ch6_paper_width_closes_part_of_the_gap_but_not_all(labels):
    path = RESULTS / "full" / f"semisupervised_{labels}_labels.json"
    if not path.exists():
        pytest.skip("no paper-width run of this label count yet; the page prints that")
    wide, quick = json.loads(path.read_text()), record(f"semisupervised_{labels}_labels")
    assert quick["paper"] < wide["value"] < quick["value"]


def multi_seed(made: Callable[[str], dict], experiment: str) -> dict:
    """The chapter's quick record of ``experiment``, over the three seeds the catalogue gives it."""
    rec = made(experiment)
    assert rec["seeds"] == [0, 1, 2] == list(experiments.get(experiment).quick.seeds) and rec["mode"] == "quick"
    return rec


@pytest.mark.parametrize("prior", ["gaussian", "mixture"])
def test_ch3_over_three_seeds_the_aae_matches_the_prior_better_on_every_seed_by_a_margin(prior, made):
    aae, vae = multi_seed(made, f"prior_match_{prior}_aae"), multi_seed(made, f"prior_match_{prior}_vae")
    wins, _, apart = results.separation(aae, vae)
    assert wins == 3 and apart >= 1.5, (aae["values"], vae["values"], apart)  # the margin chapter 3 states


def test_ch6_the_page_says_what_three_seeds_show_at_1000_labels(made):
    aae, alone = multi_seed(made, "semisupervised_1000_labels"), multi_seed(made, "semisupervised_1000_labels_labels_only")
    wins, _, apart = results.separation(aae, alone)
    if apart < 1.0:  # within the spread between seeds: the chapter must not claim a win
        assert "three quick seeds do not separate the two" in markdown_of("06_semisupervised")
    else:
        assert wins == 3 and "three quick seeds separate the two" in markdown_of("06_semisupervised")
