"""The probabilistic matcher on FEBRL4 through the real command: the issue's
target is F1 >= 0.99 (published: 0.787 simple rule, 0.989 logistic, 0.991 ECM)."""

import re
import subprocess

from conftest import kairos_binary, shared_data


def test_febrl4_f1_at_least_0_99():
    result = subprocess.run(
        [str(kairos_binary()), "match-eval", str(shared_data("febrl/dataset4a.csv")), str(shared_data("febrl/dataset4b.csv"))],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    scores = dict(re.findall(r"(\w+)=([0-9.]+)", last))
    assert float(scores["f1"]) >= 0.99, result.stdout
    assert float(scores["precision"]) >= 0.99 and float(scores["recall"]) >= 0.99, result.stdout
