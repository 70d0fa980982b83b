//! Evaluation metrics, computed the way the reference libraries do so our
//! figures can be compared with published ones number for number:
//! [`roc_auc`] like scikit-learn (ties count one half), [`qini_auc_score`]
//! and [`uplift_at_k`] like scikit-uplift 0.5.1 (including its tie order:
//! a stable ascending sort, then reversed).

use serde::Serialize;

/// Area under the ROC curve; tied scores count one half, as in
/// `sklearn.metrics.roc_auc_score`. `None` when one class is absent.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(labels.len(), scores.len(), "one score per label");
    let positives = labels.iter().filter(|&&label| label).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    // Mann–Whitney U with average ranks for ties equals the trapezoidal area.
    let order = sorted_ascending(scores);
    let mut rank_sum_positive = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && scores[order[end + 1]] == scores[order[start]] {
            end += 1;
        }
        let average_rank = (start + end) as f64 / 2.0 + 1.0;
        let tied_positives = order[start..=end].iter().filter(|&&i| labels[i]).count();
        rank_sum_positive += average_rank * tied_positives as f64;
        start = end + 1;
    }
    let positives = positives as f64;
    let u = rank_sum_positive - positives * (positives + 1.0) / 2.0;
    Some(u / (positives * negatives as f64))
}

/// Indices sorted by score ascending; equal scores keep their input order.
fn sorted_ascending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    order
}

/// numpy's `argsort(kind="mergesort")[::-1]`: what scikit-uplift ranks by.
fn sorted_descending_numpy(scores: &[f64]) -> Vec<usize> {
    let mut order = sorted_ascending(scores);
    order.reverse();
    order
}

/// Counts of a binary classifier at one threshold (`score >= threshold` is positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub true_positive: usize,
    pub false_positive: usize,
    pub true_negative: usize,
    pub false_negative: usize,
}

impl Confusion {
    pub fn at_threshold(labels: &[bool], scores: &[f64], threshold: f64) -> Confusion {
        let mut counts = Confusion {
            true_positive: 0,
            false_positive: 0,
            true_negative: 0,
            false_negative: 0,
        };
        for (&label, &score) in labels.iter().zip(scores) {
            match (label, score >= threshold) {
                (true, true) => counts.true_positive += 1,
                (false, true) => counts.false_positive += 1,
                (false, false) => counts.true_negative += 1,
                (true, false) => counts.false_negative += 1,
            }
        }
        counts
    }

    pub fn precision(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_positive)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_negative)
    }

    /// F1 as scikit-learn computes it (0 when there is no true positive).
    pub fn f1(&self) -> f64 {
        ratio(
            2 * self.true_positive,
            2 * self.true_positive + self.false_positive + self.false_negative,
        )
    }

    pub fn accuracy(&self) -> f64 {
        let total =
            self.true_positive + self.false_positive + self.true_negative + self.false_negative;
        ratio(self.true_positive + self.true_negative, total)
    }
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// The threshold that maximizes F1 on these scores, and that F1. Candidate
/// thresholds are the distinct scores; one pass over the sorted scores.
pub fn best_f1_threshold(labels: &[bool], scores: &[f64]) -> (f64, f64) {
    let order = sorted_descending_numpy(scores);
    let positives = labels.iter().filter(|&&label| label).count();
    let (mut true_positive, mut predicted) = (0usize, 0usize);
    let (mut best_threshold, mut best_f1) = (f64::INFINITY, 0.0);
    for (position, &index) in order.iter().enumerate() {
        predicted += 1;
        true_positive += usize::from(labels[index]);
        let next_is_tie = order
            .get(position + 1)
            .is_some_and(|&next| scores[next] == scores[index]);
        if next_is_tie {
            continue;
        }
        let f1 = ratio(2 * true_positive, predicted + positives);
        if f1 > best_f1 {
            (best_threshold, best_f1) = (scores[index], f1);
        }
    }
    (best_threshold, best_f1)
}

/// One point of a curve drawn in the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// ROC curve (false-positive rate, true-positive rate), one point per distinct score.
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Vec<Point> {
    let order = sorted_descending_numpy(scores);
    let positives = labels.iter().filter(|&&label| label).count().max(1) as f64;
    let negatives = (labels.len() as f64 - positives).max(1.0);
    let (mut true_positive, mut false_positive) = (0.0, 0.0);
    let mut points = vec![Point { x: 0.0, y: 0.0 }];
    for (position, &index) in order.iter().enumerate() {
        if labels[index] {
            true_positive += 1.0
        } else {
            false_positive += 1.0
        }
        let next_is_tie = order
            .get(position + 1)
            .is_some_and(|&next| scores[next] == scores[index]);
        if !next_is_tie {
            points.push(Point {
                x: false_positive / negatives,
                y: true_positive / positives,
            });
        }
    }
    points
}

/// One bin of a calibration (reliability) plot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CalibrationBin {
    pub mean_predicted: f64,
    pub observed_rate: f64,
    pub count: usize,
}

/// Equal-width probability bins; empty bins are left out.
pub fn calibration_bins(
    labels: &[bool],
    probabilities: &[f64],
    bin_count: usize,
) -> Vec<CalibrationBin> {
    let mut sums = vec![(0.0, 0.0, 0usize); bin_count];
    for (&label, &probability) in labels.iter().zip(probabilities) {
        let bin = ((probability * bin_count as f64) as usize).min(bin_count - 1);
        sums[bin].0 += probability;
        sums[bin].1 += f64::from(u8::from(label));
        sums[bin].2 += 1;
    }
    sums.into_iter()
        .filter(|&(_, _, count)| count > 0)
        .map(|(predicted, observed, count)| CalibrationBin {
            mean_predicted: predicted / count as f64,
            observed_rate: observed / count as f64,
            count,
        })
        .collect()
}

/// Cumulative gain: after targeting the top `x` share by score, the share
/// `y` of all positives reached. Lift at `x` is `y / x`.
pub fn cumulative_gain(labels: &[bool], scores: &[f64], steps: usize) -> Vec<Point> {
    let order = sorted_descending_numpy(scores);
    let positives = labels.iter().filter(|&&label| label).count().max(1) as f64;
    let mut points = vec![Point { x: 0.0, y: 0.0 }];
    let mut reached = 0.0;
    let mut next_step = 1;
    for (position, &index) in order.iter().enumerate() {
        reached += f64::from(u8::from(labels[index]));
        let taken = position + 1;
        if taken * steps >= next_step * order.len() {
            points.push(Point {
                x: taken as f64 / order.len() as f64,
                y: reached / positives,
            });
            next_step += 1;
        }
    }
    points
}

/// The Qini curve as scikit-uplift's `qini_curve`: x = people targeted,
/// y = treated responders minus control responders scaled to the treated count.
pub fn qini_curve(outcomes: &[bool], uplift: &[f64], treated: &[bool]) -> Vec<Point> {
    let order = sorted_descending_numpy(uplift);
    let (mut treated_count, mut treated_responders, mut control_responders) = (0.0, 0.0, 0.0);
    let mut points = Vec::new();
    for (position, &index) in order.iter().enumerate() {
        if treated[index] {
            treated_count += 1.0;
            treated_responders += f64::from(u8::from(outcomes[index]));
        } else {
            control_responders += f64::from(u8::from(outcomes[index]));
        }
        let next_is_tie = order
            .get(position + 1)
            .is_some_and(|&next| uplift[next] == uplift[index]);
        if next_is_tie {
            continue;
        }
        let everyone = (position + 1) as f64;
        let control_count = everyone - treated_count;
        let scale = if control_count == 0.0 {
            0.0
        } else {
            treated_count / control_count
        };
        points.push(Point {
            x: everyone,
            y: treated_responders - control_responders * scale,
        });
    }
    if points
        .first()
        .is_none_or(|first| first.x != 0.0 || first.y != 0.0)
    {
        points.insert(0, Point { x: 0.0, y: 0.0 });
    }
    points
}

/// Trapezoidal area under a curve given in increasing x (`sklearn.metrics.auc`).
fn trapezoid(points: &[Point]) -> f64 {
    points
        .windows(2)
        .map(|pair| (pair[1].x - pair[0].x) * (pair[0].y + pair[1].y) / 2.0)
        .sum()
}

/// scikit-uplift's `qini_auc_score(y, uplift, treatment)` with its default
/// `negative_effect=True`: the area between the model's Qini curve and the
/// random line, divided by the same area for the perfect ranking.
pub fn qini_auc_score(outcomes: &[bool], uplift: &[f64], treated: &[bool]) -> f64 {
    assert_eq!(outcomes.len(), uplift.len(), "one uplift per outcome");
    assert_eq!(
        outcomes.len(),
        treated.len(),
        "one treatment flag per outcome"
    );
    let actual = qini_curve(outcomes, uplift, treated);
    // The perfect ranking puts treated responders first and control responders last.
    let perfect_scores: Vec<f64> = outcomes
        .iter()
        .zip(treated)
        .map(|(&outcome, &is_treated)| match (outcome, is_treated) {
            (true, true) => 1.0,
            (true, false) => -1.0,
            (false, _) => 0.0,
        })
        .collect();
    let perfect = qini_curve(outcomes, &perfect_scores, treated);
    let last = perfect.last().copied().unwrap_or(Point { x: 0.0, y: 0.0 });
    let baseline = trapezoid(&[Point { x: 0.0, y: 0.0 }, last]);
    (trapezoid(&actual) - baseline) / (trapezoid(&perfect) - baseline)
}

/// scikit-uplift's `uplift_at_k(..., strategy="overall", k)`: among the top
/// `k` share of everyone by predicted uplift, the treated response rate
/// minus the control response rate. NaN when a group is empty there.
pub fn uplift_at_k(outcomes: &[bool], uplift: &[f64], treated: &[bool], k: f64) -> f64 {
    assert!(k > 0.0 && k < 1.0, "k is a share in (0, 1)");
    let order = sorted_descending_numpy(uplift);
    let top = (outcomes.len() as f64 * k) as usize;
    let mut sums = [(0.0, 0.0); 2]; // [control, treated]: (responders, people)
    for &index in &order[..top] {
        let group = &mut sums[usize::from(treated[index])];
        group.0 += f64::from(u8::from(outcomes[index]));
        group.1 += 1.0;
    }
    sums[1].0 / sums[1].1 - sums[0].0 / sums[0].1
}

/// Observed uplift per decile of predicted uplift (highest decile first).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UpliftBucket {
    pub predicted_uplift: f64,
    pub treated_rate: f64,
    pub control_rate: f64,
    pub observed_uplift: f64,
    pub count: usize,
}

pub fn uplift_by_decile(outcomes: &[bool], uplift: &[f64], treated: &[bool]) -> Vec<UpliftBucket> {
    let order = sorted_descending_numpy(uplift);
    (0..10)
        .map(|decile| {
            let bucket = &order[decile * order.len() / 10..(decile + 1) * order.len() / 10];
            let mut sums = [(0.0f64, 0.0f64); 2];
            let mut predicted = 0.0;
            for &index in bucket {
                let group = &mut sums[usize::from(treated[index])];
                group.0 += f64::from(u8::from(outcomes[index]));
                group.1 += 1.0;
                predicted += uplift[index];
            }
            let treated_rate = sums[1].0 / sums[1].1.max(1.0);
            let control_rate = sums[0].0 / sums[0].1.max(1.0);
            UpliftBucket {
                predicted_uplift: predicted / bucket.len().max(1) as f64,
                treated_rate,
                control_rate,
                observed_uplift: treated_rate - control_rate,
                count: bucket.len(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn roc_auc_counts_ties_as_one_half_like_sklearn() {
        // sklearn.metrics.roc_auc_score([0,0,1,1,1,0], [.1,.4,.35,.8,.4,.4]) = 0.6666666666666667
        let labels = [false, false, true, true, true, false];
        let scores = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4];
        assert!(close(roc_auc(&labels, &scores).unwrap(), 2.0 / 3.0));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
    }

    #[test]
    fn confusion_metrics_match_sklearn() {
        // y = [1,1,0,0,1,0,1], predicted positive at >= 0.5: [1,0,1,0,1,0,1]
        let labels = [true, true, false, false, true, false, true];
        let scores = [0.9, 0.2, 0.6, 0.1, 0.5, 0.3, 0.7];
        let counts = Confusion::at_threshold(&labels, &scores, 0.5);
        assert_eq!((counts.true_positive, counts.false_positive), (3, 1));
        assert_eq!((counts.true_negative, counts.false_negative), (2, 1));
        assert!(close(counts.precision(), 0.75));
        assert!(close(counts.recall(), 0.75));
        assert!(close(counts.f1(), 0.75));
        assert!(close(counts.accuracy(), 5.0 / 7.0));
    }

    #[test]
    fn best_f1_threshold_is_the_best_of_all_thresholds() {
        let labels = [true, true, false, false, true, false, true, false];
        let scores = [0.9, 0.2, 0.6, 0.1, 0.5, 0.3, 0.7, 0.5];
        let (threshold, f1) = best_f1_threshold(&labels, &scores);
        let brute = scores
            .iter()
            .map(|&t| Confusion::at_threshold(&labels, &scores, t).f1())
            .fold(0.0, f64::max);
        assert!(close(f1, brute));
        assert!(close(
            Confusion::at_threshold(&labels, &scores, threshold).f1(),
            f1
        ));
    }

    // Expected values computed with scikit-uplift 0.5.1:
    // qini_auc_score(y, u, t), uplift_at_k(y, u, t, strategy='overall', k=0.5)
    const OUTCOMES: [bool; 10] = [
        true, false, true, false, true, true, false, false, true, false,
    ];
    const UPLIFT: [f64; 10] = [0.3, 0.1, 0.3, 0.2, 0.5, 0.0, -0.1, 0.3, 0.2, 0.05];
    const TREATED: [bool; 10] = [
        true, true, false, false, true, false, true, false, true, false,
    ];

    #[test]
    fn qini_auc_score_matches_scikit_uplift() {
        let score = qini_auc_score(&OUTCOMES, &UPLIFT, &TREATED);
        assert!((score - QINI_EXPECTED).abs() < 1e-12, "{score}");
    }

    #[test]
    fn uplift_at_k_matches_scikit_uplift() {
        let score = uplift_at_k(&OUTCOMES, &UPLIFT, &TREATED, 0.5);
        assert!((score - UPLIFT_AT_HALF_EXPECTED).abs() < 1e-12, "{score}");
    }

    const QINI_EXPECTED: f64 = 0.436036036036036;
    // Depends on the tie order: 0.2 at indices 3 and 8, only index 8 is in the top half.
    const UPLIFT_AT_HALF_EXPECTED: f64 = 0.5;
}
