//! `cargo xtask ci`: everything CI checks, with a summary table. If it passes locally, CI is
//! green.

use std::time::{Duration, Instant};

use crate::images::{self, TEST_HOOKS_FEATURE};
use crate::process::{self, Result};
use crate::testing;
use crate::tools::{self, BARE_METAL_TARGET, Need};
use crate::workspace::HYPERVISOR_PACKAGE;

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step passed.
    Passed,
    /// The step failed, with the error.
    Failed(String),
    /// The step did not run, with the reason.
    Skipped(&'static str),
}

/// One row of the summary.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// Step name.
    pub name: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

fn step(reports: &mut Vec<StepReport>, name: &'static str, f: impl FnOnce() -> Result<()>) -> bool {
    eprintln!("\n==== ci step: {name} ====");
    let started = Instant::now();
    let outcome = match f() {
        Ok(()) => Outcome::Passed,
        Err(err) => {
            eprintln!("error: {err}");
            Outcome::Failed(err.0)
        }
    };
    let passed = outcome == Outcome::Passed;
    reports.push(StepReport {
        name,
        outcome,
        duration: started.elapsed(),
    });
    passed
}

/// Runs every step (a failed step does not stop the later ones, except that the emulator
/// tests need the images), prints the summary, fails if any step failed.
pub fn run() -> Result<()> {
    let mut reports = Vec::new();
    step(&mut reports, "tools", || {
        tools::ensure_packages(&[Need::Grub, Need::Qemu, Need::Bochs])?;
        tools::ensure_bare_metal_target()
    });
    step(&mut reports, "fmt", || {
        process::run(process::cargo().args(["fmt", "--all", "--", "--check"]))
    });
    step(&mut reports, "clippy (host)", || {
        process::run(process::cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            HYPERVISOR_PACKAGE,
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    step(&mut reports, "clippy (bare metal)", || {
        process::run(process::cargo().args([
            "clippy",
            "-p",
            HYPERVISOR_PACKAGE,
            "-p",
            images::TEST_GUEST_PACKAGE,
            "-p",
            "guest_rt",
            "--target",
            BARE_METAL_TARGET,
            "--",
            "-D",
            "warnings",
        ]))
    });
    step(&mut reports, "clippy (bare metal, test-hooks)", || {
        process::run(process::cargo().args([
            "clippy",
            "-p",
            HYPERVISOR_PACKAGE,
            "--target",
            BARE_METAL_TARGET,
            "--features",
            TEST_HOOKS_FEATURE,
            "--",
            "-D",
            "warnings",
        ]))
    });
    step(&mut reports, "host tests", || testing::host_tests(None));
    step(&mut reports, "loom", testing::loom_tests);
    step(&mut reports, "fuzz smoke", testing::fuzz_smoke);
    let built = step(&mut reports, "build images", || {
        images::build(false).and_then(|built| images::build_root(&built, true).map(drop))
    });
    if built {
        step(&mut reports, "emulator tests", || {
            testing::emulator_tests(None)
        });
    } else {
        reports.push(StepReport {
            name: "emulator tests",
            outcome: Outcome::Skipped("no images"),
            duration: Duration::ZERO,
        });
    }

    println!("\n{}", summary(&reports));
    let failed = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .count();
    if failed == 0 {
        Ok(())
    } else {
        Err(process::Error(format!("{failed} CI step(s) failed")))
    }
}

/// The summary table, ending with a `ci: N passed, N failed, N skipped` line.
pub fn summary(reports: &[StepReport]) -> String {
    let width = reports
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let results: Vec<String> = reports
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Passed => "ok".to_owned(),
            Outcome::Failed(_) => "FAILED".to_owned(),
            Outcome::Skipped(why) => format!("skipped ({why})"),
        })
        .collect();
    let rw = results.iter().map(String::len).max().unwrap_or(6).max(6);
    let mut text = format!("{:<width$}  {:<rw$}  {:>9}\n", "step", "result", "duration");
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (report, result) in reports.iter().zip(&results) {
        match &report.outcome {
            Outcome::Passed => passed += 1,
            Outcome::Failed(_) => failed += 1,
            Outcome::Skipped(_) => skipped += 1,
        }
        text.push_str(&format!(
            "{:<width$}  {:<rw$}  {:>7.1} s\n",
            report.name,
            result,
            report.duration.as_secs_f64()
        ));
    }
    text.push_str(&format!(
        "ci: {passed} passed, {failed} failed, {skipped} skipped"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_every_outcome() {
        let reports = [
            StepReport {
                name: "fmt",
                outcome: Outcome::Passed,
                duration: Duration::from_millis(1500),
            },
            StepReport {
                name: "host tests",
                outcome: Outcome::Failed("boom".into()),
                duration: Duration::from_secs(62),
            },
            StepReport {
                name: "emulator tests",
                outcome: Outcome::Skipped("no images"),
                duration: Duration::ZERO,
            },
        ];
        let text = summary(&reports);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[1].starts_with("fmt ") && lines[1].contains("ok") && lines[1].ends_with("1.5 s")
        );
        assert!(lines[2].contains("FAILED") && lines[2].ends_with("62.0 s"));
        assert!(lines[3].contains("skipped (no images)"));
        assert_eq!(lines[4], "ci: 1 passed, 1 failed, 1 skipped");
    }
}
