//! indicatif progress bars for the library's `Progress` trait.

use bertvision_core::pipeline::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bars on a terminal; without one (logs, CI, remote runs) a plain line at every tenth of a
/// phase, since indicatif draws nothing there.
pub struct Bars {
    bar: Option<ProgressBar>,
    terminal: bool,
    phase: String,
    total: u64,
    last_tenth: u64,
    /// Whether the first step's time was reported (on GPUs it holds kernel compilation).
    first_reported: bool,
    started: std::time::Instant,
    message: String,
}

impl Bars {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        Bars {
            bar: None,
            terminal: std::io::stderr().is_terminal(),
            phase: String::new(),
            total: 0,
            last_tenth: 0,
            first_reported: false,
            started: std::time::Instant::now(),
            message: String::new(),
        }
    }

    fn plain_report(&mut self, position: u64) {
        if self.terminal || self.total == 0 {
            return;
        }
        let tenth = position * 10 / self.total;
        if !self.first_reported && position > 0 && tenth == 0 {
            self.first_reported = true;
            eprintln!(
                "{}: first step done after {:.1} s",
                self.phase,
                self.started.elapsed().as_secs_f64()
            );
        }
        if tenth > self.last_tenth {
            self.last_tenth = tenth;
            eprintln!(
                "{}: {position}/{} after {:.1} s {}",
                self.phase,
                self.total,
                self.started.elapsed().as_secs_f64(),
                self.message
            );
        }
    }
}

impl Progress for Bars {
    fn start(&mut self, phase: &str, total: u64, unit: &str) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "{{prefix:.bold}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}} {{msg}}"
            ))
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(phase.to_string());
        self.bar = Some(bar);
        self.phase = phase.to_string();
        self.total = total;
        self.last_tenth = 0;
        self.first_reported = false;
        self.started = std::time::Instant::now();
        self.message.clear();
    }

    fn set_position(&mut self, position: u64) {
        if let Some(b) = &self.bar {
            b.set_position(position);
        }
        self.plain_report(position);
    }

    fn inc(&mut self, n: u64) {
        let position = match &self.bar {
            Some(b) => {
                b.inc(n);
                b.position()
            }
            None => return,
        };
        self.plain_report(position);
    }

    fn message(&mut self, message: &str) {
        if let Some(b) = &self.bar {
            b.set_message(message.to_string());
        }
        self.message = message.to_string();
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    fn log(&mut self, line: &str) {
        // indicatif prints above its bar only where it draws one (a terminal).
        match &self.bar {
            Some(b) if self.terminal => b.println(line),
            _ => eprintln!("{line}"),
        }
    }
}
