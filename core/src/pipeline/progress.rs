//! Progress reporting: the library says what it is doing, the caller shows it.

/// Progress reporting, implemented by the command line (indicatif) or by nothing.
pub trait Progress {
    fn start(&mut self, phase: &str, total: u64, unit: &str);
    fn set_position(&mut self, position: u64);
    fn inc(&mut self, n: u64);
    fn message(&mut self, message: &str);
    fn finish(&mut self);
    /// A line for the log (above any bar).
    fn log(&mut self, line: &str);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _: &str, _: u64, _: &str) {}
    fn set_position(&mut self, _: u64) {}
    fn inc(&mut self, _: u64) {}
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
    fn log(&mut self, _: &str) {}
}
