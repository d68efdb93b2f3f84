//! Samples and their summary: median, min, max.

use std::time::Duration;

use anyhow::{Result, bail};

/// The summary of a set of timings, in the unit they were collected in.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Result<Summary> {
        if samples.is_empty() {
            bail!("no samples to summarize");
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Ok(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            count: n,
        })
    }

    /// `median 1.2, min 1.0, max 3.4 (n=20)` with `unit` after each value.
    pub fn describe(&self, unit: &str) -> String {
        format!(
            "median {:.1}{unit}, min {:.1}{unit}, max {:.1}{unit} (n={})",
            self.median, self.min, self.max, self.count
        )
    }
}

/// The mean of `samples` (0 for none).
pub fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len().max(1) as f64
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Summary::of(&[3.0, 1.0, 2.0])
            .ok()
            .map(|s| (s.median, s.min, s.max));
        assert_eq!(odd, Some((2.0, 1.0, 3.0)));
        let even = Summary::of(&[4.0, 1.0, 2.0, 3.0]).ok().map(|s| s.median);
        assert_eq!(even, Some(2.5));
        assert!(Summary::of(&[]).is_err());
    }
}
