//! Figures gathered over rounds, printed as one table of medians with each
//! column's ratio to the first (the baseline).

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
    /// ratio to the baseline (above 1 is better, whichever way the figure goes).
    pub fn print(&self) {
        println!("| figure | {} |", self.columns.join(" | "));
        println!("|---|{}", "---:|".repeat(self.columns.len()));
        for figure in &self.figures {
            let medians: Vec<f64> = figure.samples.iter().map(|s| median(s)).collect();
            let native = medians[0];
            let cells: Vec<String> = medians
                .iter()
                .enumerate()
                .map(|(i, &m)| {
                    if figure.samples[i].is_empty() {
                        return "–".to_string();
                    }
                    let value = format_value(m);
                    if i == 0 || native == 0.0 || m == 0.0 {
                        value
                    } else {
                        let ratio = match figure.better {
                            Better::Higher => m / native,
                            Better::Lower => native / m,
                        };
                        format!("{value} (x{})", format_ratio(ratio))
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
    use super::format_ratio;

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(format_ratio(1.234), "1.23");
        assert_eq!(format_ratio(0.1), "0.10");
        assert_eq!(format_ratio(0.0571), "0.057");
        assert_eq!(format_ratio(0.00573), "0.0057");
    }
}
