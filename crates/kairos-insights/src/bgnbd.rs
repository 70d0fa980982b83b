//! BG/NBD ("beta-geometric / negative binomial") churn model of Fader,
//! Hardie & Lee (2005): while alive a customer buys at a Poisson rate
//! (gamma-distributed across customers, `r`, `alpha`) and after each
//! purchase drops out with a probability (beta-distributed, `a`, `b`).
//!
//! [`summarize`] turns transactions into (frequency, recency, T) in weeks,
//! [`fit`] finds the maximum-likelihood parameters (Nelder–Mead on their
//! logarithms, deterministic), and [`probability_alive`] and
//! [`expected_purchases`] are the per-profile formulas (as in the
//! `lifetimes` package), pure and cheap enough to evaluate on every event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::datasets::Purchase;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// One customer's calibration statistics, in weeks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CustomerSummary {
    /// Repeat purchase days (distinct purchase days minus one).
    pub frequency: f64,
    /// First to last purchase.
    pub recency: f64,
    /// First purchase to the end of calibration ("T").
    pub age: f64,
}

/// Per-customer summaries of the purchases up to `calibration_end_day`
/// (inclusive), in customer-id order; purchases on one day count once.
pub fn summarize(
    purchases: &[Purchase],
    calibration_end_day: i64,
) -> Vec<(String, CustomerSummary)> {
    let mut days_by_customer: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for purchase in purchases
        .iter()
        .filter(|purchase| purchase.day <= calibration_end_day)
    {
        days_by_customer
            .entry(&purchase.customer)
            .or_default()
            .push(purchase.day);
    }
    days_by_customer
        .into_iter()
        .map(|(customer, mut days)| {
            days.sort_unstable();
            days.dedup();
            let (first, last) = (days[0], days[days.len() - 1]);
            let summary = CustomerSummary {
                frequency: (days.len() - 1) as f64,
                recency: (last - first) as f64 / 7.0,
                age: (calibration_end_day - first) as f64 / 7.0,
            };
            (customer.to_string(), summary)
        })
        .collect()
}

/// Log-likelihood of one customer (FHL 2005, equation 6).
pub fn customer_log_likelihood(params: &BgNbdParams, customer: &CustomerSummary) -> f64 {
    let BgNbdParams { r, alpha, a, b } = *params;
    let CustomerSummary {
        frequency: x,
        recency: t_x,
        age: t,
    } = *customer;
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
    let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
    let a3 = -(r + x) * (alpha + t).ln();
    if x == 0.0 {
        return a1 + a2 + a3;
    }
    let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (alpha + t_x).ln();
    // log(e^a3 + e^a4) without overflow.
    let high = a3.max(a4);
    a1 + a2 + high + ((a3 - high).exp() + (a4 - high).exp()).ln()
}

pub fn log_likelihood(params: &BgNbdParams, customers: &[CustomerSummary]) -> f64 {
    customers
        .iter()
        .map(|customer| customer_log_likelihood(params, customer))
        .sum()
}

/// Maximum-likelihood parameters. Searches over the logarithms so every
/// step stays positive; restarts from the best point until it stops moving.
pub fn fit(customers: &[CustomerSummary]) -> BgNbdParams {
    assert!(!customers.is_empty(), "no customers to fit");
    let objective = |logs: &[f64; 4]| {
        let params = from_logs(logs);
        let value = -log_likelihood(&params, customers);
        if value.is_finite() {
            value
        } else {
            f64::INFINITY
        }
    };
    let mut best = [0.0; 4];
    let mut best_value = objective(&best);
    for _ in 0..5 {
        let (point, value) = nelder_mead(&objective, best, 0.5, 4_000);
        let improved = best_value - value;
        (best, best_value) = (point, value);
        if improved < 1e-9 {
            break;
        }
    }
    from_logs(&best)
}

fn from_logs(logs: &[f64; 4]) -> BgNbdParams {
    BgNbdParams {
        r: logs[0].exp(),
        alpha: logs[1].exp(),
        a: logs[2].exp(),
        b: logs[3].exp(),
    }
}

/// Probability the customer has not dropped out by the end of their history.
pub fn probability_alive(params: &BgNbdParams, frequency: f64, recency: f64, age: f64) -> f64 {
    if frequency == 0.0 {
        return 1.0;
    }
    let BgNbdParams { r, alpha, a, b } = *params;
    let odds_dead =
        a / (b + frequency - 1.0) * ((alpha + age) / (alpha + recency)).powf(r + frequency);
    1.0 / (1.0 + odds_dead)
}

/// Expected purchases in the next `weeks` for a customer with this history
/// (FHL 2005, equation 10).
pub fn expected_purchases(
    params: &BgNbdParams,
    weeks: f64,
    frequency: f64,
    recency: f64,
    age: f64,
) -> f64 {
    let BgNbdParams { r, alpha, a, b } = *params;
    let x = frequency;
    let hypergeometric = hyp2f1(r + x, b + x, a + b + x - 1.0, weeks / (alpha + age + weeks));
    let numerator = (a + b + x - 1.0) / (a - 1.0)
        * (1.0 - ((alpha + age) / (alpha + age + weeks)).powf(r + x) * hypergeometric);
    let odds_dead = if x > 0.0 {
        a / (b + x - 1.0) * ((alpha + age) / (alpha + recency)).powf(r + x)
    } else {
        0.0
    };
    numerator / (1.0 + odds_dead)
}

/// Probability that a new customer makes exactly `count` repeat purchases
/// in `weeks` (FHL 2005, equation 8): what the frequency chart compares.
pub fn probability_of_purchases(params: &BgNbdParams, weeks: f64, count: u32) -> f64 {
    let BgNbdParams { r, alpha, a, b } = *params;
    let x = f64::from(count);
    let ln_beta = |p: f64, q: f64| ln_gamma(p) + ln_gamma(q) - ln_gamma(p + q);
    let survive = alpha / (alpha + weeks);
    let rate_share = weeks / (alpha + weeks);
    let negative_binomial =
        |j: f64| (ln_gamma(r + j) - ln_gamma(r) - ln_gamma(j + 1.0) + j * rate_share.ln()).exp();
    let alive_all_along =
        (ln_beta(a, b + x) - ln_beta(a, b)).exp() * survive.powf(r) * negative_binomial(x);
    if count == 0 {
        return alive_all_along;
    }
    let fewer: f64 = (0..count).map(|j| negative_binomial(f64::from(j))).sum();
    alive_all_along
        + (ln_beta(a + 1.0, b + x - 1.0) - ln_beta(a, b)).exp() * (1.0 - survive.powf(r) * fewer)
}

/// Gauss's hypergeometric series ₂F₁(a, b; c; z) for 0 ≤ z < 1.
fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let (mut term, mut sum) = (1.0, 1.0);
    for n in 0..100_000 {
        let n = f64::from(n);
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() < 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients; ~1e-15 relative).
pub fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut series = COEFFICIENTS[0];
    for (index, coefficient) in COEFFICIENTS.iter().enumerate().skip(1) {
        series += coefficient / (x + index as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

/// Nelder–Mead simplex minimization in four dimensions.
fn nelder_mead(
    objective: &impl Fn(&[f64; 4]) -> f64,
    start: [f64; 4],
    step: f64,
    iterations: usize,
) -> ([f64; 4], f64) {
    let mut simplex: Vec<([f64; 4], f64)> = (0..5)
        .map(|vertex| {
            let mut point = start;
            if vertex > 0 {
                point[vertex - 1] += step;
            }
            (point, objective(&point))
        })
        .collect();
    let along = |from: &[f64; 4], to: &[f64; 4], factor: f64| -> [f64; 4] {
        std::array::from_fn(|i| from[i] + factor * (to[i] - from[i]))
    };
    for _ in 0..iterations {
        simplex.sort_by(|p, q| p.1.total_cmp(&q.1));
        // Relative: a log-likelihood in the thousands carries no more digits.
        if (simplex[4].1 - simplex[0].1).abs() <= 1e-11 * (1.0 + simplex[0].1.abs()) {
            break;
        }
        let centroid: [f64; 4] =
            std::array::from_fn(|i| simplex[..4].iter().map(|v| v.0[i]).sum::<f64>() / 4.0);
        let worst = simplex[4];
        let reflected = along(&centroid, &worst.0, -1.0);
        let reflected_value = objective(&reflected);
        if reflected_value < simplex[0].1 {
            let expanded = along(&centroid, &worst.0, -2.0);
            let expanded_value = objective(&expanded);
            simplex[4] = if expanded_value < reflected_value {
                (expanded, expanded_value)
            } else {
                (reflected, reflected_value)
            };
        } else if reflected_value < simplex[3].1 {
            simplex[4] = (reflected, reflected_value);
        } else {
            let contracted = along(&centroid, &worst.0, 0.5);
            let contracted_value = objective(&contracted);
            if contracted_value < worst.1 {
                simplex[4] = (contracted, contracted_value);
            } else {
                let best = simplex[0].0;
                for vertex in simplex.iter_mut().skip(1) {
                    vertex.0 = along(&best, &vertex.0, 0.5);
                    vertex.1 = objective(&vertex.0);
                }
            }
        }
    }
    simplex.sort_by(|p, q| p.1.total_cmp(&q.1));
    simplex[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::{load_purchases, parse_yyyymmdd};
    use std::path::PathBuf;

    const PUBLISHED: BgNbdParams = BgNbdParams {
        r: 0.2426,
        alpha: 4.4135,
        a: 0.7929,
        b: 2.4258,
    };

    fn shared_data(relative: &str) -> PathBuf {
        // Read when the test runs (cargo sets it), not when it was compiled:
        // a test binary reused from a build in another checkout would
        // otherwise look for the data beside that checkout.
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
        let path = PathBuf::from(manifest_dir)
            .join("../../../shared/data")
            .join(relative);
        assert!(
            path.exists(),
            "shared data set missing: {} (tests need ../shared/data)",
            path.display()
        );
        path
    }

    fn cdnow_summaries() -> Vec<(String, CustomerSummary)> {
        let purchases = load_purchases(&shared_data("cdnow/CDNOW_sample.txt")).unwrap();
        summarize(&purchases, parse_yyyymmdd("19970930").unwrap())
    }

    #[test]
    fn ln_gamma_matches_known_values() {
        assert!(ln_gamma(1.0).abs() < 1e-14);
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-13);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
        assert!((ln_gamma(0.2426) - 1.319_785_475_090_791_8).abs() < 1e-12);
    }

    #[test]
    fn summary_equals_the_published_cdnow_summary() {
        let ours = cdnow_summaries();
        let mut reader =
            csv::Reader::from_path(shared_data("cdnow/cdnow_customers_summary.csv")).unwrap();
        let published: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(ours.len(), published.len());
        // The summary is keyed by the sample's second column (`id`), not the CDNOW customer id.
        let text = std::fs::read_to_string(shared_data("cdnow/CDNOW_sample.txt")).unwrap();
        let sample_id: BTreeMap<&str, u64> = text
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .map(|fields| (fields[0], fields[1].parse().unwrap()))
            .collect();
        let by_id: BTreeMap<u64, CustomerSummary> = ours
            .iter()
            .map(|(customer, summary)| (sample_id[customer.as_str()], *summary))
            .collect();
        for record in &published {
            let summary = by_id[&record[0].parse::<u64>().unwrap()];
            let column = |i: usize| record[i].parse::<f64>().unwrap();
            assert_eq!(summary.frequency, column(1), "customer {}", &record[0]);
            assert!(
                (summary.recency - column(2)).abs() < 0.006,
                "customer {}",
                &record[0]
            );
            assert!(
                (summary.age - column(3)).abs() < 0.006,
                "customer {}",
                &record[0]
            );
        }
    }

    #[test]
    fn log_likelihood_at_the_published_parameters_is_the_published_value() {
        let customers: Vec<CustomerSummary> =
            cdnow_summaries().into_iter().map(|(_, s)| s).collect();
        let value = log_likelihood(&PUBLISHED, &customers);
        assert!((value - -9582.4).abs() < 0.1, "{value}");
    }

    #[test]
    fn fit_reaches_the_published_parameters() {
        let customers: Vec<CustomerSummary> =
            cdnow_summaries().into_iter().map(|(_, s)| s).collect();
        let fitted = fit(&customers);
        for (ours, theirs) in [
            (fitted.r, PUBLISHED.r),
            (fitted.alpha, PUBLISHED.alpha),
            (fitted.a, PUBLISHED.a),
            (fitted.b, PUBLISHED.b),
        ] {
            assert!((ours / theirs - 1.0).abs() < 0.01, "{fitted:?}");
        }
    }

    #[test]
    fn serving_formulas_behave() {
        // A customer who bought often and recently is more likely alive than one who stopped.
        let recent = probability_alive(&PUBLISHED, 5.0, 38.0, 39.0);
        let stopped = probability_alive(&PUBLISHED, 5.0, 5.0, 39.0);
        assert!(recent > 0.8 && stopped < 0.1, "{recent} {stopped}");
        assert_eq!(probability_alive(&PUBLISHED, 0.0, 0.0, 39.0), 1.0);
        let expected = expected_purchases(&PUBLISHED, 39.0, 2.0, 30.43, 38.86);
        assert!(expected > 0.5 && expected < 2.5, "{expected}");
        let total: f64 = (0..200)
            .map(|count| probability_of_purchases(&PUBLISHED, 39.0, count))
            .sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
    }
}
