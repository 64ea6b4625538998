//! The conformance kit's report: each check, how it went, and how long it took.

use std::future::Future;
use std::time::Duration;

use skyport_core::clock::SharedClock;

/// One check and how it went.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// `Ok(detail)` or `Err(what is wrong)`.
    pub outcome: Result<String, String>,
    /// How long it took.
    pub took: Duration,
}

/// Every check run against one plugin.
#[derive(Debug, Clone)]
pub struct Report {
    /// The plugin instance tested.
    pub plugin: String,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome.is_ok())
    }

    /// One line per check, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            let ms = check.took.as_millis();
            match &check.outcome {
                Ok(detail) if detail.is_empty() => {
                    out += &format!("PASS {} ({ms} ms)\n", check.name)
                }
                Ok(detail) => out += &format!("PASS {} ({ms} ms): {detail}\n", check.name),
                Err(wrong) => out += &format!("FAIL {} ({ms} ms): {wrong}\n", check.name),
            }
        }
        let failed = self.checks.iter().filter(|c| c.outcome.is_err()).count();
        out += &format!(
            "{}: {} of {} checks passed{}\n",
            self.plugin,
            self.checks.len() - failed,
            self.checks.len(),
            if failed == 0 {
                "; it conforms to the provider contract"
            } else {
                ""
            }
        );
        out
    }
}

/// Runs the checks one after the other, recording each.
pub(super) struct Kit {
    pub(super) clock: SharedClock,
    pub(super) plugin: String,
    pub(super) checks: Vec<Check>,
}

impl Kit {
    pub(super) async fn check<F, T>(&mut self, name: &str, run: F) -> Option<T>
    where
        F: Future<Output = Result<(T, String), String>>,
    {
        let started = self.clock.monotonic();
        let outcome = run.await;
        let took = self.clock.monotonic().saturating_sub(started);
        let (value, outcome) = match outcome {
            Ok((value, detail)) => (Some(value), Ok(detail)),
            Err(wrong) => (None, Err(wrong)),
        };
        self.checks.push(Check {
            name: name.to_string(),
            outcome,
            took,
        });
        value
    }

    pub(super) fn skip(&mut self, name: &str, why: &str) {
        self.checks.push(Check {
            name: name.to_string(),
            outcome: Err(format!("not run: {why}")),
            took: Duration::ZERO,
        });
    }
}
