//! Figures gathered over rounds, printed as one table of medians with each
//! column's ratio to the first (the baseline).
//!
//! The ratio is paired: each round's figure over the baseline's in the same
//! round, and the median of those. Servers of one round run within seconds
//! of each other, while this VM's speed drifts by ±30% from one minute to
//! the next: a ratio of medians taken from different minutes mixes that
//! drift into the comparison. With three rounds or more the cell also gives
//! the range of the rounds' ratios, so a difference that flips from round
//! to round shows as one.

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

struct Figure {
    name: String,
    better: Better,
    /// Samples per column, in the order of `Report::columns`.
    samples: Vec<Vec<f64>>,
}

pub struct Report {
    /// Column names; the first is the baseline the others are compared to.
    columns: Vec<String>,
    figures: Vec<Figure>,
}

impl Report {
    pub fn new(columns: &[&str]) -> Self {
        Report {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            figures: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &str, better: Better, column: &str, value: f64) {
        let column = self
            .columns
            .iter()
            .position(|c| c == column)
            .expect("a known column");
        let index = match self.figures.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.figures.push(Figure {
                    name: name.to_string(),
                    better,
                    samples: vec![Vec::new(); self.columns.len()],
                });
                self.figures.len() - 1
            }
        };
        self.figures[index].samples[column].push(value);
    }

    /// A Markdown table: the median of each figure, and `(x0.93)`, its
    /// paired ratio to the baseline (above 1 is better, whichever way the
    /// figure goes), with the rounds' range: `(x0.93, 0.88-0.97)`.
    pub fn print(&self) {
        println!("| figure | {} |", self.columns.join(" | "));
        println!("|---|{}", "---:|".repeat(self.columns.len()));
        for figure in &self.figures {
            let base = &figure.samples[0];
            let cells: Vec<String> = figure
                .samples
                .iter()
                .enumerate()
                .map(|(i, samples)| {
                    if samples.is_empty() {
                        return "–".to_string();
                    }
                    let value = format_value(median(samples));
                    match ratios(base, samples, figure.better) {
                        Some(_) if i == 0 => value,
                        Some(r) if r.len() >= 3 => format!(
                            "{value} (x{}, {}-{})",
                            format_ratio(median(&r)),
                            format_ratio(r[0]),
                            format_ratio(r[r.len() - 1])
                        ),
                        Some(r) => format!("{value} (x{})", format_ratio(median(&r))),
                        None => value,
                    }
                })
                .collect();
            let arrow = match figure.better {
                Better::Higher => "↑",
                Better::Lower => "↓",
            };
            println!("| {} {arrow} | {} |", figure.name, cells.join(" | "));
        }
    }
}

/// Each round's ratio of `samples` to `base` (above 1 is better), sorted;
/// rounds are paired by position, so both must have one sample a round.
/// `None` when they do not, or a sample is zero.
fn ratios(base: &[f64], samples: &[f64], better: Better) -> Option<Vec<f64>> {
    if base.len() != samples.len() || base.is_empty() {
        return None;
    }
    let mut ratios = Vec::with_capacity(base.len());
    for (&b, &s) in base.iter().zip(samples) {
        if b == 0.0 || s == 0.0 {
            return None;
        }
        ratios.push(match better {
            Better::Higher => s / b,
            Better::Lower => b / s,
        });
    }
    ratios.sort_by(f64::total_cmp);
    Some(ratios)
}

fn median(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Two significant digits below 0.1 (`x0.0057`), else two decimals.
fn format_ratio(r: f64) -> String {
    if r >= 0.1 || r <= 0.0 {
        return format!("{r:.2}");
    }
    let decimals = 1 - r.log10().floor() as i32;
    format!("{r:.*}", decimals as usize)
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::{Better, format_ratio, median, ratios};

    #[test]
    fn a_ratio_pairs_each_round_with_the_baselines() {
        // The VM speeds up for the second server's turn in round 2 and for
        // both in round 3: the medians' ratio reads 180/100 = 1.8, the
        // rounds' own ratios 1.2, 1.8, 1.2.
        let base = [100.0, 100.0, 150.0];
        let other = [120.0, 180.0, 180.0];
        assert_eq!(median(&other) / median(&base), 1.8);
        let r = ratios(&base, &other, Better::Higher).unwrap();
        assert!((median(&r) - 1.2).abs() < 1e-9, "{r:?}");
        let r = ratios(&other, &base, Better::Lower).unwrap();
        assert!((median(&r) - 1.2).abs() < 1e-9, "lower is better: {r:?}");
        assert!(ratios(&base, &other[..2], Better::Higher).is_none());
        assert!(ratios(&base, &[1.0, 0.0, 1.0], Better::Higher).is_none());
    }

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(format_ratio(1.234), "1.23");
        assert_eq!(format_ratio(0.1), "0.10");
        assert_eq!(format_ratio(0.0571), "0.057");
        assert_eq!(format_ratio(0.00573), "0.0057");
    }
}
