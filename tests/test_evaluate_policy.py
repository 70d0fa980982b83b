"""`kairos evaluate-policy` through the real binary on the Open Bandit samples
in ../shared/data/open_bandit: Bernoulli TS's click rate estimated from the
uniform-random policy's logs (issue 14, item 7).

The issue's target is the best estimator's mean relative error <= 0.157 (obp's
DM figure on the full "all" campaign). On these 10,000-row samples it holds for
women; for men the best estimator stays near 0.19, and the xfail below says so
(strict: it fails loudly the day the figure is reached). Why: the men random
log has 46 clicks and the truth (BTS men: 69 clicks) lies 1.5 times above the
random log's rate; the unbiased estimators' runs spread over 0.0028-0.0074, so
even a zero-bias estimator would average ~0.14 relative error. See
docs/benchmarks.md, "Off-policy evaluation"; bench/ope-prototype.py tried
position-model, empirical-Bayes, DR-os/switch, sub-Gaussian and MIPS
estimators honestly and none reaches 0.157 on both campaigns.
"""

import functools
import re
import subprocess

import pytest

from conftest import kairos_binary, shared_data

LINE = re.compile(
    r"estimator=(?P<name>[a-z-]+) estimate=(?P<estimate>[0-9]+\.[0-9]+) "
    r"truth=(?P<truth>[0-9]+\.[0-9]+) relative_error=(?P<error>[0-9]+\.[0-9]+)"
)
ESTIMATORS = ["dm", "ipw", "snipw", "dr", "dr-os", "switch-dr"]
TARGET = 0.157
# Observed click rates of the BTS samples (clicks / 10,000 impressions).
TRUTH = {"men": 0.0069, "women": 0.0046}


def evaluate(*args, runs=30, seed=None):
    command = [str(kairos_binary()), "evaluate-policy", *map(str, args), "--runs", str(runs)]
    if seed is not None:
        command += ["--seed", str(seed)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@functools.lru_cache(maxsize=None)  # each campaign runs once per seed (~4 s in debug)
def campaign(name, seed=None):
    result = evaluate(
        "--logs", shared_data(f"open_bandit/random/{name}"),
        "--target", shared_data(f"open_bandit/bts/{name}"),
        seed=seed,
    )
    assert result.returncode == 0, result.stderr
    return result


def parse(stdout):
    lines = stdout.strip().splitlines()
    rows = []
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"not in the documented format: {line!r}"
        rows.append(match.groupdict())
    return rows


@pytest.mark.parametrize("name", ["men", "women"])
def test_output_is_one_line_per_estimator_in_the_documented_format(name):
    rows = parse(campaign(name).stdout)
    assert [row["name"] for row in rows] == ESTIMATORS
    for row in rows:
        assert float(row["truth"]) == pytest.approx(TRUTH[name])
        estimate = float(row["estimate"])
        # Relative error is the mean over runs, so at least that of the mean estimate.
        assert float(row["error"]) >= abs(estimate - TRUTH[name]) / TRUTH[name] - 1e-3
        assert 0.001 < estimate < 0.02, row


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            "men",
            marks=pytest.mark.xfail(
                strict=True,
                reason="best on the 10k men sample is ~0.19 (snipw): see the module docstring",
            ),
        ),
        "women",
    ],
)
def test_best_estimator_within_the_issue_target(name):
    rows = parse(campaign(name).stdout)
    best = min(rows, key=lambda row: float(row["error"]))
    assert float(best["error"]) <= TARGET, rows


def test_men_best_estimator_error_as_documented():
    # The figure docs/benchmarks.md reports (runs=30, seed 12345): guards
    # against silent regressions while the 0.157 target is out of reach.
    rows = parse(campaign("men").stdout)
    assert min(float(row["error"]) for row in rows) <= 0.21, rows


def test_the_ipw_family_moves_toward_the_better_policy():
    # BTS is better than random on men (0.0069 vs 0.0046); the importance-weighted
    # estimators must see it, while the direct method (no item features) cannot.
    rows = {row["name"]: float(row["estimate"]) for row in parse(campaign("men").stdout)}
    random_rate = 46 / 10_000
    for name in ["ipw", "snipw", "dr"]:
        assert rows[name] > random_rate * 1.15, rows


def test_same_seed_same_figures_other_seed_other_resamples():
    first = campaign("women", seed=7).stdout
    assert campaign("women", seed=7).stdout == first
    assert campaign("women", seed=8).stdout != first


def test_bad_input_says_what_is_wrong_and_how_to_fix_it(tmp_path):
    random_men = shared_data("open_bandit/random/men")
    bts_men = shared_data("open_bandit/bts/men")

    missing = evaluate("--logs", tmp_path / "nope", "--target", bts_men, runs=1)
    assert missing.returncode == 2
    assert "--logs" in missing.stderr and "cannot read the folder" in missing.stderr
    assert "one log CSV and item_context.csv" in missing.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "item_context.csv").write_text((random_men / "item_context.csv").read_text())
    no_csv = evaluate("--logs", random_men, "--target", empty, runs=1)
    assert no_csv.returncode == 2
    assert "--target" in no_csv.stderr and "no log CSV" in no_csv.stderr

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "item_context.csv").write_text((random_men / "item_context.csv").read_text())
    (bad / "log.csv").write_text("item_id,clicked\n1,0\n")
    bad_columns = evaluate("--logs", bad, "--target", bts_men, runs=1)
    assert bad_columns.returncode == 2
    assert "missing column `position`" in bad_columns.stderr
    assert "expected columns: item_id,position,click,propensity_score" in bad_columns.stderr

    other_campaign = evaluate(
        "--logs", random_men, "--target", shared_data("open_bandit/bts/women"), runs=1
    )
    assert other_campaign.returncode == 2
    assert "same campaign" in other_campaign.stderr
    for result in (missing, no_csv, bad_columns, other_campaign):
        assert result.stdout == ""

    zero_runs = evaluate("--logs", random_men, "--target", bts_men, runs=0)
    assert zero_runs.returncode == 2 and "--runs" in zero_runs.stderr


def test_help_explains_the_folders_and_the_output():
    result = subprocess.run(
        [str(kairos_binary()), "evaluate-policy", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for phrase in ["--logs <DIR>", "--target <DIR>", "item_context.csv", "relative_error", "--runs"]:
        assert phrase in result.stdout, phrase
