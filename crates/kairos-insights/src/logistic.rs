//! L2-regularized logistic regression fitted by Newton's method (IRLS).
//!
//! Features are standardized first so one penalty treats them alike; with a
//! few dozen features the Hessian is tiny and Newton converges in a handful
//! of steps, exactly and deterministically.

use serde::{Deserialize, Serialize};

use crate::gbm::sigmoid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Logistic {
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    pub intercept: f64,
    /// Weights on the standardized features.
    pub weights: Vec<f64>,
}

impl Logistic {
    /// Fits with penalty `lambda_l2 * |w|² / 2` on the standardized weights
    /// (the intercept is not penalized), like scikit-learn's `C = 1 / lambda`
    /// applied to the summed loss.
    pub fn fit(rows: &[Vec<f64>], labels: &[bool], lambda_l2: f64) -> Logistic {
        assert!(!rows.is_empty(), "no training rows");
        Logistic::fit_penalized(rows, labels, &vec![lambda_l2; rows[0].len()])
    }

    /// Like [`Logistic::fit`], with a penalty per feature (on its
    /// standardized weight): some weights can be shrunk harder than others.
    pub fn fit_penalized(rows: &[Vec<f64>], labels: &[bool], penalties: &[f64]) -> Logistic {
        assert!(!rows.is_empty(), "no training rows");
        let dimension = rows[0].len();
        assert_eq!(penalties.len(), dimension, "one penalty per feature");
        let (means, scales) = standardization(rows);
        let standardized: Vec<Vec<f64>> = rows
            .iter()
            .map(|row| standardize(row, &means, &scales))
            .collect();
        // Parameters: [intercept, weights...].
        let mut parameters = vec![0.0; dimension + 1];
        for _ in 0..50 {
            let (gradient, hessian) =
                gradient_and_hessian(&standardized, labels, &parameters, penalties);
            let step = solve_cholesky(hessian, gradient);
            let mut largest = 0.0f64;
            for (parameter, delta) in parameters.iter_mut().zip(&step) {
                *parameter -= delta;
                largest = largest.max(delta.abs());
            }
            if largest < 1e-9 {
                break;
            }
        }
        Logistic {
            means,
            scales,
            intercept: parameters[0],
            weights: parameters[1..].to_vec(),
        }
    }

    pub fn predict_proba(&self, features: &[f64]) -> f64 {
        let mut margin = self.intercept;
        for (index, &x) in features.iter().enumerate() {
            margin += self.weights[index] * (x - self.means[index]) / self.scales[index];
        }
        sigmoid(margin)
    }
}

fn standardization(rows: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let count = rows.len() as f64;
    let dimension = rows[0].len();
    let means: Vec<f64> = (0..dimension)
        .map(|j| rows.iter().map(|row| row[j]).sum::<f64>() / count)
        .collect();
    let scales = (0..dimension)
        .map(|j| {
            let variance = rows
                .iter()
                .map(|row| (row[j] - means[j]).powi(2))
                .sum::<f64>()
                / count;
            // A constant column stays constant (zero after centering) instead of dividing by zero.
            if variance > 0.0 { variance.sqrt() } else { 1.0 }
        })
        .collect();
    (means, scales)
}

fn standardize(row: &[f64], means: &[f64], scales: &[f64]) -> Vec<f64> {
    row.iter()
        .zip(means)
        .zip(scales)
        .map(|((x, mean), scale)| (x - mean) / scale)
        .collect()
}

fn gradient_and_hessian(
    rows: &[Vec<f64>],
    labels: &[bool],
    parameters: &[f64],
    penalties: &[f64],
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let size = parameters.len();
    let mut gradient = vec![0.0; size];
    let mut hessian = vec![vec![0.0; size]; size];
    let mut extended = vec![1.0; size];
    for (row, &label) in rows.iter().zip(labels) {
        extended[1..].copy_from_slice(row);
        let margin: f64 = extended.iter().zip(parameters).map(|(x, w)| x * w).sum();
        let p = sigmoid(margin);
        let residual = p - f64::from(u8::from(label));
        let weight = p * (1.0 - p);
        for i in 0..size {
            gradient[i] += residual * extended[i];
            for j in 0..=i {
                hessian[i][j] += weight * extended[i] * extended[j];
            }
        }
    }
    for i in 1..size {
        gradient[i] += penalties[i - 1] * parameters[i];
        hessian[i][i] += penalties[i - 1];
    }
    hessian[0][0] += 1e-9; // keeps the system positive definite when a class is absent
    // Only the lower triangle was accumulated; mirror it.
    for i in 1..size {
        let (upper, lower) = hessian.split_at_mut(i);
        for (j, row) in upper.iter_mut().enumerate() {
            row[i] = lower[0][j];
        }
    }
    (gradient, hessian)
}

/// Solves `A x = b` for symmetric positive-definite `A`.
fn solve_cholesky(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for j in 0..n {
        let diagonal = (a[j][j] - (0..j).map(|k| a[j][k] * a[j][k]).sum::<f64>())
            .max(1e-12)
            .sqrt();
        a[j][j] = diagonal;
        for i in j + 1..n {
            a[i][j] = (a[i][j] - (0..j).map(|k| a[i][k] * a[j][k]).sum::<f64>()) / diagonal;
        }
    }
    for i in 0..n {
        b[i] = (b[i] - (0..i).map(|k| a[i][k] * b[k]).sum::<f64>()) / a[i][i];
    }
    for i in (0..n).rev() {
        b[i] = (b[i] - (i + 1..n).map(|k| a[k][i] * b[k]).sum::<f64>()) / a[i][i];
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn recovers_the_weights_of_a_logistic_model() {
        let mut rng = SplitMix64::new(9);
        let (rows, labels): (Vec<Vec<f64>>, Vec<bool>) = (0..20_000)
            .map(|_| {
                let (a, b) = (rng.next_f64() * 2.0 - 1.0, rng.next_f64() * 10.0);
                let p = sigmoid(-1.0 + 2.0 * a + 0.3 * b);
                (vec![a, b], rng.next_f64() < p)
            })
            .unzip();
        let model = Logistic::fit(&rows, &labels, 1e-6);
        // Back to raw units: weight / scale.
        let raw_a = model.weights[0] / model.scales[0];
        let raw_b = model.weights[1] / model.scales[1];
        assert!((raw_a - 2.0).abs() < 0.15, "{raw_a}");
        assert!((raw_b - 0.3).abs() < 0.03, "{raw_b}");
        let p = model.predict_proba(&[0.0, 0.0]);
        assert!((p - sigmoid(-1.0)).abs() < 0.03, "{p}");
    }

    #[test]
    fn cholesky_solves_a_small_system() {
        let x = solve_cholesky(vec![vec![4.0, 2.0], vec![2.0, 3.0]], vec![2.0, 1.0]);
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
    }
}
