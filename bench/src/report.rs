//! Figures gathered over rounds, printed as one table of medians with each
//! server's ratio to native.

use crate::servers::Kind;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

struct Figure {
    name: String,
    better: Better,
    /// Samples per server, in the order of `Report::kinds`.
    samples: Vec<Vec<f64>>,
}

pub struct Report {
    kinds: Vec<Kind>,
    figures: Vec<Figure>,
}

impl Report {
    pub fn new(kinds: &[Kind]) -> Self {
        Report {
            kinds: kinds.to_vec(),
            figures: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &str, better: Better, kind: Kind, value: f64) {
        let column = self
            .kinds
            .iter()
            .position(|&k| k == kind)
            .expect("a known server");
        let index = match self.figures.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.figures.push(Figure {
                    name: name.to_string(),
                    better,
                    samples: vec![Vec::new(); self.kinds.len()],
                });
                self.figures.len() - 1
            }
        };
        self.figures[index].samples[column].push(value);
    }

    /// A Markdown table: the median of each figure, and `(x0.93)`, its
    /// ratio to native (above 1 is better, whichever way the figure goes).
    pub fn print(&self) {
        let names: Vec<&str> = self.kinds.iter().map(|k| k.name()).collect();
        println!("| figure | {} |", names.join(" | "));
        println!("|---|{}", "---:|".repeat(names.len()));
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
                        format!("{value} (x{ratio:.2})")
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

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}
