"""Uplift learners over many random halves of Hillstrom (Womens e-mail vs
no e-mail, target visit): Qini and uplift@30% of `kairos train uplift`
against scikit-learn's two-model logistic regression (standardized
features, C = 1) on the same halves — split 42 is the reference split of
the issue, 1..11 show how much one split's figure is luck.

    .work/venv/bin/python bench/uplift-splits.py [path/to/kairos]
"""

import re
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklift.metrics import qini_auc_score, uplift_at_k

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parent.parent
KAIROS = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/kairos")
DATA = ROOT.parent / "shared/data/hillstrom/hillstrom.csv"


def features(d: pd.DataFrame) -> np.ndarray:
    x = pd.DataFrame({"recency": d.recency, "history_segment": d.history_segment.str[0].astype(int),
                      "history": d.history, "log_history": np.log1p(d.history), "mens": d.mens,
                      "womens": d.womens, "newbie": d.newbie})
    for zip_code in ["Urban", "Surburban", "Rural"]:
        x["zip_" + zip_code] = (d.zip_code == zip_code) * 1
    for channel in ["Phone", "Web", "Multichannel"]:
        x["channel_" + channel] = (d.channel == channel) * 1
    return x.values.astype(float)


def two_model_logistic(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    scaler = StandardScaler().fit(features(train))
    x, x_test = scaler.transform(features(train)), scaler.transform(features(test))
    treated = (train.segment == "Womens E-Mail").values
    arms = [LogisticRegression(max_iter=2000).fit(x[arm], train.visit.values[arm]) for arm in (treated, ~treated)]
    return arms[0].predict_proba(x_test)[:, 1] - arms[1].predict_proba(x_test)[:, 1]


def main():
    customers = pd.read_csv(DATA)
    customers = customers[customers.segment != "Mens E-Mail"]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for seed in [42, *range(1, 12)]:
            train, test = train_test_split(customers, test_size=0.5, random_state=seed)
            train.to_csv(work / "train.csv", index=False)
            test.to_csv(work / "test.csv", index=False)
            out = subprocess.run([KAIROS, "train", "uplift", "--train", work / "train.csv", "--test",
                                  work / "test.csv", "--report", work / "report"],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            ours = {k: float(v) for k, v in re.findall(r"(\w+)=(-?[0-9.]+)", out)}
            uplift = two_model_logistic(train, test)
            treated, visit = (test.segment == "Womens E-Mail").values, test.visit.values
            theirs = {"qini": qini_auc_score(visit, uplift, treated),
                      "uplift_at_30": uplift_at_k(visit, uplift, treated, strategy="overall", k=0.3)}
            rows.append((seed, ours, theirs))
            print(f"split {seed:2}: kairos qini {ours['qini']:.4f} uplift@30 {ours['uplift_at_30']:.4f} | "
                  f"two-model logistic qini {theirs['qini']:.4f} uplift@30 {theirs['uplift_at_30']:.4f}", flush=True)
    for metric in ["qini", "uplift_at_30"]:
        ours = [r[1][metric] for r in rows]
        theirs = [r[2][metric] for r in rows]
        wins = sum(a > b for a, b in zip(ours, theirs))
        print(f"{metric}: mean kairos {np.mean(ours):.4f}, two-model logistic {np.mean(theirs):.4f}; "
              f"kairos higher on {wins} of {len(rows)} splits")


if __name__ == "__main__":
    main()
