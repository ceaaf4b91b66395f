//! The classifier score: the Inception score of Salimans et al. 2016 ("Improved Techniques for
//! Training GANs", arXiv:1606.03498v1, §4) computed with any classifier's logits — with the
//! bundled digit classifier, the Inception-score analogue for MNIST-like data.
//!
//! IS = exp( E_x KL( p(y|x) ‖ p(y) ) ),   p(y) = E_x p(y|x)
//!
//! It is 1 when every image gets the same class distribution and at most the number of classes,
//! reached when each image is classified with certainty and the classes are used equally. As in
//! the reference code (openai/improved-gan, `inception_score.py`, and the DDPM paper's Table 1),
//! the images are cut into `splits` equal parts (10 by default), the score is computed on each
//! (with that part's own p(y)) and the mean and standard deviation (population, numpy's
//! `np.std`) over parts are reported; ⌊N / splits⌋ images go in each part and the last
//! `N mod splits` are not used.

use crate::EvalError;

/// The number of splits of the Inception-score convention (Salimans et al. 2016's code).
pub const DEFAULT_SPLITS: usize = 10;

/// A classifier score over equal splits of the images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassifierScore {
    /// Mean of the per-split scores.
    pub mean: f64,
    /// Population standard deviation of the per-split scores (0 for one split).
    pub std: f64,
    /// Number of splits.
    pub splits: usize,
    /// Images used: `splits · ⌊N / splits⌋`.
    pub used: usize,
}

/// log softmax of one row of logits in f64: `l − max − ln Σ exp(l − max)` (never overflows;
/// the largest entry is exactly 0 before the log-sum is subtracted).
fn log_softmax(row: &[f32], out: &mut [f64]) {
    let max = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    let log_sum = sum.ln();
    for (o, &v) in out.iter_mut().zip(row) {
        *o = f64::from(v) - max - log_sum;
    }
}

/// exp(E KL(p(y|x) ‖ p(y))) of the rows of one split, in f64.
fn split_score(logits: &[f32], classes: usize) -> f64 {
    let n = logits.len() / classes;
    let mut log_p = vec![0.0; logits.len()];
    for (row, out) in logits
        .chunks_exact(classes)
        .zip(log_p.chunks_exact_mut(classes))
    {
        log_softmax(row, out);
    }
    let mut p_y = vec![0.0; classes];
    for row in log_p.chunks_exact(classes) {
        for (m, &l) in p_y.iter_mut().zip(row) {
            *m += l.exp();
        }
    }
    let log_p_y: Vec<f64> = p_y.iter().map(|&m| (m / n as f64).ln()).collect();
    let mut kl_sum = 0.0;
    for row in log_p.chunks_exact(classes) {
        for (&l, &ly) in row.iter().zip(&log_p_y) {
            let p = l.exp();
            // p · log p → 0 as p → 0; skipping p = 0 also avoids 0 · (−∞ + ∞).
            if p > 0.0 {
                kl_sum += p * (l - ly);
            }
        }
    }
    (kl_sum / n as f64).exp()
}

/// The classifier score of row-major `[N, classes]` logits over `splits` equal splits (see the
/// module docs), computed in f64.
///
/// IS = exp( E_x KL( p(y|x) ‖ p(y) ) )   (Salimans et al. 2016, §4)
///
/// # Errors
/// [`EvalError::InvalidArgument`] if `classes < 2`, `splits == 0` or `logits.len()` is not a
/// multiple of `classes`; [`EvalError::TooFewSamples`] if there are fewer rows than splits;
/// [`EvalError::NonFinite`] if a logit is NaN or ±inf.
///
/// # Example
/// ```
/// use ddpm_eval::classifier_score;
///
/// // Ten images, each classified with certainty as a different one of 10 classes: score 10.
/// let mut logits = vec![-100.0f32; 100];
/// for i in 0..10 {
///     logits[i * 10 + i] = 100.0;
/// }
/// let s = classifier_score(&logits, 10, 1)?;
/// assert!((s.mean - 10.0).abs() < 1e-9);
/// # Ok::<(), ddpm_eval::EvalError>(())
/// ```
pub fn classifier_score(
    logits: &[f32],
    classes: usize,
    splits: usize,
) -> Result<ClassifierScore, EvalError> {
    if classes < 2 || !logits.len().is_multiple_of(classes) {
        return Err(EvalError::InvalidArgument {
            what: "classifier_score logits",
            reason: format!(
                "{} values do not make rows of {classes} classes (at least 2)",
                logits.len()
            ),
        });
    }
    if splits == 0 {
        return Err(EvalError::InvalidArgument {
            what: "classifier_score splits",
            reason: "must be positive".into(),
        });
    }
    let n = logits.len() / classes;
    if n < splits {
        return Err(EvalError::TooFewSamples {
            what: "the classifier score",
            needed: splits,
            got: n,
        });
    }
    if let Some(index) = logits.iter().position(|v| !v.is_finite()) {
        return Err(EvalError::NonFinite {
            what: "logits given to the classifier score".into(),
            index,
        });
    }
    let per = n / splits;
    let scores: Vec<f64> = logits[..splits * per * classes]
        .chunks_exact(per * classes)
        .map(|part| split_score(part, classes))
        .collect();
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / splits as f64;
    Ok(ClassifierScore {
        mean,
        std: var.sqrt(),
        splits,
        used: splits * per,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms() {
        // Equal logits: p(y|x) = p(y) = uniform, KL = 0, score exactly 1.
        let s = classifier_score(&[0.5; 40], 10, 2).unwrap();
        assert_eq!((s.mean, s.std, s.used), (1.0, 0.0, 4));
        // Certain and spread evenly over 10 classes: KL = ln 10 for every image, score 10.
        let mut certain = vec![0f32; 20 * 10];
        for i in 0..20 {
            certain[i * 10..(i + 1) * 10].fill(-2000.0);
            certain[i * 10 + i % 10] = 2000.0;
        }
        let s = classifier_score(&certain, 10, 2).unwrap();
        assert!((s.mean - 10.0).abs() < 1e-12 && s.std < 1e-12, "{s:?}");
        // Certain but always the same class: p(y) is that class, score 1.
        let mut same = vec![-50f32; 30];
        for i in 0..10 {
            same[i * 3] = 50.0;
        }
        let s = classifier_score(&same, 3, 1).unwrap();
        assert!((s.mean - 1.0).abs() < 1e-12, "{s:?}");
        // Two images, two classes, p(y|x) = (a, 1 − a) and (1 − a, a): p(y) uniform and
        // KL = ln 2 + a ln a + (1 − a) ln(1 − a) for both.
        let z = 1.3f32; // logit difference: a = σ(z)
        let a = 1.0 / (1.0 + (-f64::from(z)).exp());
        let want = (2f64.ln() + a * a.ln() + (1.0 - a) * (1.0 - a).ln()).exp();
        let s = classifier_score(&[z, 0.0, 0.0, z], 2, 1).unwrap();
        assert!((s.mean - want).abs() < 1e-12, "{} vs {want}", s.mean);
    }

    #[test]
    fn splits_drop_the_remainder_and_report_their_spread() {
        // Split 1: certain over 2 classes evenly (score 2); split 2: uniform (score 1); the 5th
        // row is left over and must not count.
        let logits = [30.0, -30.0, -30.0, 30.0, 0.0, 0.0, 0.0, 0.0, 30.0, -30.0];
        let s = classifier_score(&logits, 2, 2).unwrap();
        assert_eq!(s.used, 4);
        assert!(
            (s.mean - 1.5).abs() < 1e-12 && (s.std - 0.5).abs() < 1e-12,
            "{s:?}"
        );
    }

    #[test]
    fn huge_logits_stay_finite() {
        let s = classifier_score(&[1e30, -1e30, -1e30, 1e30], 2, 1).unwrap();
        assert!((s.mean - 2.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            classifier_score(&[0.0; 9], 2, 1),
            Err(EvalError::InvalidArgument { .. })
        ));
        assert!(matches!(
            classifier_score(&[0.0; 10], 1, 1),
            Err(EvalError::InvalidArgument { .. })
        ));
        assert!(matches!(
            classifier_score(&[0.0; 10], 10, 0),
            Err(EvalError::InvalidArgument { .. })
        ));
        assert!(matches!(
            classifier_score(&[0.0; 20], 10, 3),
            Err(EvalError::TooFewSamples {
                needed: 3,
                got: 2,
                ..
            })
        ));
        assert!(matches!(
            classifier_score(&[0.0, f32::NAN, 0.0, 0.0], 2, 1),
            Err(EvalError::NonFinite { index: 1, .. })
        ));
    }
}
