//! The statistics of an A/B/n experiment, as pure functions of each arm's
//! sufficient statistics ([`ArmData`]): what `GET
//! /v1/experiments/{id}/results` and `kairos experiment-stats` report.
//!
//! - per arm: the rate (or mean) with a Wilson score interval (a Wald
//!   interval on the mean for a continuous metric);
//! - against the control: the difference with Newcombe's hybrid score
//!   interval (Wald for a continuous metric), and the lift
//!   `mean / control − 1` with a delta-method interval on the log ratio;
//! - an always-valid p-value: the mixture sequential probability ratio test
//!   (mSPRT, Johari et al. 2017, normal mixture) on the difference, valid
//!   however often it is looked at;
//! - CUPED (Deng et al. 2013): `θ = cov(Y, X) / var(X)` pooled over the
//!   arms, with `X` each person's pre-exposure count of the metric event;
//!   each arm's mean adjusted by `θ (x̄_arm − x̄)`, its variance by
//!   `var(Y − θX)`;
//! - Thompson sampling: the probability that each arm is best under its
//!   Beta posterior, and one draw to allocate a new person ([`thompson_choice`]).
//!
//! The figures match scipy / statsmodels (`proportion_confint(method="wilson")`,
//! `confint_proportions_2indep(method="newcomb")`, `compare="ratio",
//! method="log"`): tests/test_experiment_stats.py checks them, and their
//! coverage on simulated experiments.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// Each arm needs this many exposures before the sequential test speaks:
/// below it the plug-in variance is too rough for the test to stay valid.
pub const SEQUENTIAL_MIN_EXPOSURES: u64 = 100;
/// The mixture's standard deviation as a fraction of one person's standard
/// deviation of the difference: the effect size the test is most powerful
/// for (about a 30 % relative lift on a 10 % rate). Validity holds for any
/// value; only power depends on it.
pub const MIXTURE_SD_RATIO: f64 = 0.1;
/// Posterior draws behind the Thompson probabilities: their Monte Carlo
/// error is under 0.5 %.
pub const THOMPSON_DRAWS: usize = 10_000;

/// One arm's sufficient statistics: `n` people exposed, `Y` each one's
/// outcome (0/1 converted, or the summed value of a continuous metric), `X`
/// each one's pre-exposure covariate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmData {
    pub name: String,
    pub exposures: u64,
    /// People with at least one metric event after their exposure.
    pub conversions: u64,
    /// Σy, Σy²: a continuous metric (absent: y is 0/1, the conversion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_sq: Option<f64>,
    /// Σx, Σx², Σxy: the pre-exposure covariate, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariate: Option<Covariate>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Covariate {
    pub sum_x: f64,
    pub sum_x2: f64,
    pub sum_xy: f64,
}

impl ArmData {
    fn n(&self) -> f64 {
        self.exposures as f64
    }

    fn continuous(&self) -> bool {
        self.sum.is_some()
    }

    fn sum_y(&self) -> f64 {
        self.sum.unwrap_or(self.conversions as f64)
    }

    fn sum_y2(&self) -> f64 {
        self.sum_sq.unwrap_or(self.conversions as f64)
    }

    /// The metric's mean: the conversion rate, or the mean value.
    pub fn mean(&self) -> Option<f64> {
        (self.exposures > 0).then(|| self.sum_y() / self.n())
    }

    /// The population variance of one person's outcome.
    fn variance(&self) -> Option<f64> {
        let mean = self.mean()?;
        Some((self.sum_y2() / self.n() - mean * mean).max(0.0))
    }
}

/// A two-sided interval.
pub type Interval = [f64; 2];

/// What an arm's analysis says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmResult {
    pub name: String,
    pub control: bool,
    pub exposures: u64,
    pub conversions: u64,
    /// Conversions / exposures.
    pub rate: Option<f64>,
    /// Wilson score interval of the rate.
    pub interval: Option<Interval>,
    /// A continuous metric's mean per exposed person and its interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_interval: Option<Interval>,
    /// Against the control (absent for the control itself).
    pub difference: Option<f64>,
    pub difference_interval: Option<Interval>,
    pub lift: Option<f64>,
    pub lift_interval: Option<Interval>,
    pub sequential: Option<Sequential>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuped: Option<Cuped>,
    /// Probability this arm is best (Thompson; conversion metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability_best: Option<f64>,
}

/// The mSPRT against the control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sequential {
    /// Always-valid p-value at this look (1 until both arms have
    /// [`SEQUENTIAL_MIN_EXPOSURES`]).
    pub p_value: f64,
    /// `p_value <= alpha / (arms − 1)`: stopping now keeps the
    /// false-positive rate at alpha over every treatment arm.
    pub significant: bool,
}

/// CUPED-adjusted figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cuped {
    pub theta: f64,
    pub mean: f64,
    pub difference: Option<f64>,
    pub difference_interval: Option<Interval>,
    pub lift: Option<f64>,
    pub lift_interval: Option<Interval>,
    /// 1 − var(adjusted difference) / var(difference).
    pub variance_reduction: Option<f64>,
}

/// Why an analysis could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("no arm named {0:?} (the control must be one of the arms)")]
    NoControl(String),
    #[error("arm {0:?}: conversions ({1}) exceed exposures ({2})")]
    Inconsistent(String, u64, u64),
    #[error("alpha must be between 0 and 0.5, got {0}")]
    Alpha(f64),
    #[error("arm {0:?}: {1} must be a finite number")]
    NotFinite(String, &'static str),
}

/// Analyzes every arm against `control` at level `1 − alpha`.
pub fn analyze(arms: &[ArmData], control: &str, alpha: f64) -> Result<Vec<ArmResult>, StatsError> {
    analyze_with(arms, control, alpha, THOMPSON_DRAWS)
}

/// [`analyze`] with `draws` posterior draws for the Thompson probabilities
/// (0: none; simulations of thousands of experiments skip them).
pub fn analyze_with(
    arms: &[ArmData],
    control: &str,
    alpha: f64,
    draws: usize,
) -> Result<Vec<ArmResult>, StatsError> {
    if !(alpha > 0.0 && alpha < 0.5) {
        return Err(StatsError::Alpha(alpha));
    }
    for arm in arms {
        check(arm)?;
    }
    let control_arm = arms
        .iter()
        .find(|arm| arm.name == control)
        .ok_or_else(|| StatsError::NoControl(control.to_string()))?;
    let z = normal_quantile(1.0 - alpha / 2.0);
    // Each treatment is tested against the control: with k of them the
    // sequential verdicts share alpha (Bonferroni), so "some arm won" stays
    // a false positive at most alpha of the time.
    let alpha_each = alpha / arms.len().saturating_sub(1).max(1) as f64;
    let theta = cuped_theta(arms);
    let best = (draws > 0)
        .then(|| thompson_probabilities(arms, draws, 7))
        .flatten();
    Ok(arms
        .iter()
        .enumerate()
        .map(|(index, arm)| {
            let is_control = arm.name == control;
            let vs = (!is_control).then_some(control_arm);
            let mut result = describe(arm, z);
            result.control = is_control;
            if let Some(control) = vs {
                compare(&mut result, arm, control, z, alpha_each);
            }
            result.cuped = theta.and_then(|theta| cuped(arms, arm, vs, theta, z));
            result.probability_best = best.as_ref().map(|best| best[index]);
            result
        })
        .collect())
}

fn check(arm: &ArmData) -> Result<(), StatsError> {
    if !arm.continuous() && arm.conversions > arm.exposures {
        return Err(StatsError::Inconsistent(
            arm.name.clone(),
            arm.conversions,
            arm.exposures,
        ));
    }
    let finite = |value: Option<f64>, what| match value {
        Some(value) if !value.is_finite() => Err(StatsError::NotFinite(arm.name.clone(), what)),
        _ => Ok(()),
    };
    finite(arm.sum, "sum")?;
    finite(arm.sum_sq, "sum_sq")?;
    if let Some(covariate) = arm.covariate {
        finite(Some(covariate.sum_x), "covariate.sum_x")?;
        finite(Some(covariate.sum_x2), "covariate.sum_x2")?;
        finite(Some(covariate.sum_xy), "covariate.sum_xy")?;
    }
    Ok(())
}

/// The arm on its own: rate, Wilson interval, mean.
fn describe(arm: &ArmData, z: f64) -> ArmResult {
    let rate = (arm.exposures > 0).then(|| arm.conversions as f64 / arm.n());
    let (mean, mean_interval) = if arm.continuous() {
        let mean = arm.mean();
        let interval = mean.zip(arm.variance()).map(|(mean, variance)| {
            let se = (variance / arm.n()).sqrt();
            [mean - z * se, mean + z * se]
        });
        (mean, interval)
    } else {
        (None, None)
    };
    ArmResult {
        name: arm.name.clone(),
        control: false,
        exposures: arm.exposures,
        conversions: arm.conversions.min(arm.exposures),
        rate,
        interval: wilson(arm.conversions.min(arm.exposures), arm.exposures, z),
        mean,
        mean_interval,
        difference: None,
        difference_interval: None,
        lift: None,
        lift_interval: None,
        sequential: None,
        cuped: None,
        probability_best: None,
    }
}

/// Difference, lift and the sequential test against the control.
fn compare(result: &mut ArmResult, arm: &ArmData, control: &ArmData, z: f64, alpha: f64) {
    let (Some(mean), Some(control_mean)) = (arm.mean(), control.mean()) else {
        return;
    };
    result.difference = Some(mean - control_mean);
    result.difference_interval = if arm.continuous() {
        wald_difference(arm, control, z)
    } else {
        newcombe(
            (arm.conversions, arm.exposures),
            (control.conversions, control.exposures),
            z,
        )
    };
    if control_mean != 0.0 {
        result.lift = Some(mean / control_mean - 1.0);
    }
    result.lift_interval = log_ratio_interval(
        (mean, arm.variance().unwrap_or(0.0), arm.n()),
        (control_mean, control.variance().unwrap_or(0.0), control.n()),
        z,
    );
    let p_value = msprt_p_value(arm, control);
    result.sequential = Some(Sequential {
        p_value,
        significant: p_value <= alpha,
    });
}

/// Wilson score interval for `k` successes in `n`.
pub fn wilson(k: u64, n: u64, z: f64) -> Option<Interval> {
    if n == 0 {
        return None;
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    // At 0 or n the bound is exactly 0 or 1 (rounding would leave the
    // observed rate just outside its own interval).
    let low = if k == 0 {
        0.0
    } else {
        (center - half).max(0.0)
    };
    let high = if p == 1.0 {
        1.0
    } else {
        (center + half).min(1.0)
    };
    Some([low, high])
}

/// Newcombe's hybrid score interval for `p1 − p2` (his method 10).
pub fn newcombe(one: (u64, u64), two: (u64, u64), z: f64) -> Option<Interval> {
    let [l1, u1] = wilson(one.0, one.1, z)?;
    let [l2, u2] = wilson(two.0, two.1, z)?;
    let p1 = one.0 as f64 / one.1 as f64;
    let p2 = two.0 as f64 / two.1 as f64;
    let d = p1 - p2;
    Some([
        d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    ])
}

fn wald_difference(arm: &ArmData, control: &ArmData, z: f64) -> Option<Interval> {
    let d = arm.mean()? - control.mean()?;
    let se = (arm.variance()? / arm.n() + control.variance()? / control.n()).sqrt();
    Some([d - z * se, d + z * se])
}

/// Delta-method interval of `m1 / m2 − 1` on the log scale, from each
/// group's `(mean, variance of one person, n)`; none when a mean is 0.
pub fn log_ratio_interval(one: (f64, f64, f64), two: (f64, f64, f64), z: f64) -> Option<Interval> {
    let ((m1, v1, n1), (m2, v2, n2)) = (one, two);
    if m1 <= 0.0 || m2 <= 0.0 || n1 == 0.0 || n2 == 0.0 {
        return None;
    }
    let log_ratio = (m1 / m2).ln();
    let se = (v1 / (n1 * m1 * m1) + v2 / (n2 * m2 * m2)).sqrt();
    Some([
        (log_ratio - z * se).exp() - 1.0,
        (log_ratio + z * se).exp() - 1.0,
    ])
}

/// The mSPRT's always-valid p-value for "the arm's mean equals the
/// control's", at this look: `1 / Λ` with the normal-mixture likelihood
/// ratio `Λ = sqrt(V / (V + τ²)) · exp(τ² d² / (2 V (V + τ²)))`, `d` the
/// observed difference, `V` its variance, `τ` the mixture's standard
/// deviation. Rejecting at the first look where it falls to `alpha` keeps
/// the false-positive rate at `alpha`, however many looks.
pub fn msprt_p_value(arm: &ArmData, control: &ArmData) -> f64 {
    if arm.exposures < SEQUENTIAL_MIN_EXPOSURES || control.exposures < SEQUENTIAL_MIN_EXPOSURES {
        return 1.0;
    }
    let (Some(m1), Some(m2), Some(v1), Some(v2)) = (
        arm.mean(),
        control.mean(),
        arm.variance(),
        control.variance(),
    ) else {
        return 1.0;
    };
    let variance = v1 / arm.n() + v2 / control.n();
    if variance <= 0.0 {
        return 1.0;
    }
    let tau2 = MIXTURE_SD_RATIO.powi(2) * (v1 + v2);
    let d = m1 - m2;
    let log_lambda = 0.5 * (variance / (variance + tau2)).ln()
        + tau2 * d * d / (2.0 * variance * (variance + tau2));
    (-log_lambda).exp().min(1.0)
}

/// CUPED's θ over every arm pooled; none when the covariate is unknown or
/// constant.
fn cuped_theta(arms: &[ArmData]) -> Option<f64> {
    let mut totals = [0.0; 5]; // n, Σx, Σx², Σy, Σxy
    for arm in arms {
        let covariate = arm.covariate?;
        totals[0] += arm.n();
        totals[1] += covariate.sum_x;
        totals[2] += covariate.sum_x2;
        totals[3] += arm.sum_y();
        totals[4] += covariate.sum_xy;
    }
    let n = totals[0];
    if n < 2.0 {
        return None;
    }
    let (mean_x, mean_y) = (totals[1] / n, totals[3] / n);
    let var_x = totals[2] / n - mean_x * mean_x;
    let cov = totals[4] / n - mean_x * mean_y;
    (var_x > 1e-12).then(|| cov / var_x)
}

/// One arm's CUPED-adjusted mean and variance of one person's adjusted
/// outcome, centred on the pooled covariate mean.
fn adjusted(arms: &[ArmData], arm: &ArmData, theta: f64) -> Option<(f64, f64)> {
    let covariate = arm.covariate?;
    let n_all: f64 = arms.iter().map(ArmData::n).sum();
    let x_all: f64 = arms
        .iter()
        .filter_map(|arm| arm.covariate.map(|c| c.sum_x))
        .sum::<f64>()
        / n_all;
    let n = arm.n();
    if n == 0.0 {
        return None;
    }
    let (mean_x, mean_y) = (covariate.sum_x / n, arm.sum_y() / n);
    let var_x = (covariate.sum_x2 / n - mean_x * mean_x).max(0.0);
    let cov = covariate.sum_xy / n - mean_x * mean_y;
    let var_y = arm.variance()?;
    let variance = (var_y + theta * theta * var_x - 2.0 * theta * cov).max(0.0);
    Some((mean_y - theta * (mean_x - x_all), variance))
}

fn cuped(
    arms: &[ArmData],
    arm: &ArmData,
    control: Option<&ArmData>,
    theta: f64,
    z: f64,
) -> Option<Cuped> {
    let (mean, variance) = adjusted(arms, arm, theta)?;
    let mut result = Cuped {
        theta,
        mean,
        difference: None,
        difference_interval: None,
        lift: None,
        lift_interval: None,
        variance_reduction: None,
    };
    let Some(control) = control else {
        return Some(result);
    };
    let (control_mean, control_variance) = adjusted(arms, control, theta)?;
    let d = mean - control_mean;
    let se = (variance / arm.n() + control_variance / control.n()).sqrt();
    result.difference = Some(d);
    result.difference_interval = Some([d - z * se, d + z * se]);
    if control_mean != 0.0 {
        result.lift = Some(mean / control_mean - 1.0);
    }
    result.lift_interval = log_ratio_interval(
        (mean, variance, arm.n()),
        (control_mean, control_variance, control.n()),
        z,
    );
    let raw = arm.variance()? / arm.n() + control.variance()? / control.n();
    if raw > 0.0 {
        result.variance_reduction = Some(1.0 - se * se / raw);
    }
    Some(result)
}

/// The probability each arm has the highest conversion rate under its
/// Beta(1 + conversions, 1 + misses) posterior, by `draws` draws; none for
/// a continuous metric.
pub fn thompson_probabilities(arms: &[ArmData], draws: usize, seed: u64) -> Option<Vec<f64>> {
    if arms.is_empty() || arms.iter().any(ArmData::continuous) {
        return None;
    }
    let counts: Vec<(u64, u64)> = arms
        .iter()
        .map(|arm| (arm.conversions.min(arm.exposures), arm.exposures))
        .collect();
    let mut wins = vec![0usize; arms.len()];
    let mut random = SplitMix64::new(seed);
    for _ in 0..draws {
        wins[best_draw(&counts, &mut random)] += 1;
    }
    Some(
        wins.into_iter()
            .map(|won| won as f64 / draws as f64)
            .collect(),
    )
}

/// Thompson allocation: the arm (index into `counts`, each `(conversions,
/// exposures)`) whose posterior draw is highest, with draws seeded by
/// `seed` (the same person and counts, the same arm).
pub fn thompson_choice(counts: &[(u64, u64)], seed: u64) -> usize {
    best_draw(counts, &mut SplitMix64::new(seed))
}

fn best_draw(counts: &[(u64, u64)], random: &mut SplitMix64) -> usize {
    let mut best = (0, f64::MIN);
    for (index, &(conversions, exposures)) in counts.iter().enumerate() {
        let alpha = 1.0 + conversions as f64;
        let beta = 1.0 + exposures.saturating_sub(conversions) as f64;
        let x = gamma(alpha, random);
        let y = gamma(beta, random);
        let draw = if x + y > 0.0 { x / (x + y) } else { 0.5 };
        if draw > best.1 {
            best = (index, draw);
        }
    }
    best.0
}

/// A standard normal draw (Box–Muller).
fn normal(random: &mut SplitMix64) -> f64 {
    let u1 = random.next_f64().max(f64::MIN_POSITIVE);
    let u2 = random.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Gamma(shape, 1) draw (Marsaglia–Tsang).
fn gamma(shape: f64, random: &mut SplitMix64) -> f64 {
    if shape < 1.0 {
        let boost = random.next_f64().max(f64::MIN_POSITIVE).powf(1.0 / shape);
        return gamma(shape + 1.0, random) * boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(random);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = random.next_f64().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative
/// error below 1.2e-9), for `0 < p < 1`.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(name: &str, conversions: u64, exposures: u64) -> ArmData {
        ArmData {
            name: name.into(),
            exposures,
            conversions,
            ..ArmData::default()
        }
    }

    #[test]
    fn the_normal_quantile_is_exact_enough() {
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-8);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090_232_306_167_813_5).abs() < 1e-7);
    }

    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels.stats.proportion.proportion_confint(12, 100, method="wilson")
        let [low, high] = wilson(12, 100, normal_quantile(0.975)).unwrap();
        assert!((low - 0.069_994_064).abs() < 1e-8, "{low}");
        assert!((high - 0.198_120_994).abs() < 1e-8, "{high}");
        assert_eq!(wilson(0, 0, 1.96), None);
        assert_eq!(wilson(0, 10, 1.96).unwrap()[0], 0.0);
    }

    #[test]
    fn lift_and_difference_point_the_right_way() {
        let results = analyze(&[arm("a", 100, 1000), arm("b", 150, 1000)], "a", 0.05).unwrap();
        let b = &results[1];
        assert!((b.lift.unwrap() - 0.5).abs() < 1e-12);
        let [low, high] = b.lift_interval.unwrap();
        assert!(low > 0.0 && high > 0.5);
        let [low, high] = b.difference_interval.unwrap();
        assert!(low > 0.0 && low < 0.05 && high > 0.05);
        assert!(results[0].control && results[0].lift.is_none());
        assert!(b.sequential.unwrap().significant);
        let best = b.probability_best.unwrap();
        assert!(best > 0.99, "{best}");
    }

    #[test]
    fn several_treatments_share_alpha() {
        // p ≈ 0.03: significant alone, not as one of three treatments.
        let two = analyze(&[arm("a", 1000, 10_000), arm("b", 1150, 10_000)], "a", 0.05).unwrap();
        let p = two[1].sequential.unwrap().p_value;
        assert!(p > 0.0167 && p <= 0.05, "{p}");
        assert!(two[1].sequential.unwrap().significant);
        let four = analyze(
            &[
                arm("a", 1000, 10_000),
                arm("b", 1150, 10_000),
                arm("c", 1000, 10_000),
                arm("d", 1000, 10_000),
            ],
            "a",
            0.05,
        )
        .unwrap();
        assert!(!four[1].sequential.unwrap().significant);
    }

    #[test]
    fn the_sequential_test_waits_for_enough_exposures() {
        let p = msprt_p_value(&arm("b", 50, 60), &arm("a", 1, 60));
        assert_eq!(p, 1.0);
        let same = msprt_p_value(&arm("b", 100, 1000), &arm("a", 100, 1000));
        assert!(same > 0.99, "{same}");
    }

    #[test]
    fn cuped_removes_the_covariates_variance() {
        // y = x exactly: the adjusted difference has no variance left.
        let with = |name: &str, n: u64, ones: u64| ArmData {
            name: name.into(),
            exposures: n,
            conversions: ones,
            covariate: Some(Covariate {
                sum_x: ones as f64,
                sum_x2: ones as f64,
                sum_xy: ones as f64,
            }),
            ..ArmData::default()
        };
        let results = analyze(&[with("a", 1000, 100), with("b", 1000, 130)], "a", 0.05).unwrap();
        let cuped = results[1].cuped.unwrap();
        assert!((cuped.theta - 1.0).abs() < 1e-9);
        assert!(cuped.variance_reduction.unwrap() > 0.99);
    }

    #[test]
    fn thompson_prefers_the_better_arm_and_is_seeded() {
        let counts = [(10, 100), (40, 100)];
        let picks = (0..1000)
            .filter(|seed| thompson_choice(&counts, *seed) == 1)
            .count();
        assert!(picks > 990, "{picks}");
        assert_eq!(thompson_choice(&counts, 5), thompson_choice(&counts, 5));
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(matches!(
            analyze(&[arm("a", 5, 3)], "a", 0.05),
            Err(StatsError::Inconsistent(..))
        ));
        assert!(matches!(
            analyze(&[arm("a", 1, 3)], "z", 0.05),
            Err(StatsError::NoControl(_))
        ));
        assert!(matches!(
            analyze(&[arm("a", 1, 3)], "a", 0.7),
            Err(StatsError::Alpha(_))
        ));
    }
}
