//! The training loop's step losses, read back from the device together, not one per step
//! (issue #20, lever 2). Reading a value drains the device's queue: on a GPU, a read per step
//! makes the host wait for every step before it can queue the next one. So a step leaves its
//! loss on the device; the loop reads the losses still waiting in one read when
//! [`StepLosses::due`] says so (every [`READ_EVERY_STEPS`] steps or [`READ_EVERY`], whichever
//! comes first) and wherever it must: before a checkpoint (which stores them), at the steps the
//! loop's caller evaluates at (so that `metrics.jsonl` keeps its order), and at the end.
//!
//! A step's `seconds` is when the host finished queueing it; on the CPU, when it ran.

use std::cell::Cell;
use std::time::{Duration, Instant};

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::metrics_log::MetricsLog;
use crate::error::{Error, Result};

/// At most this many steps' losses wait on the device.
pub const READ_EVERY_STEPS: usize = 32;
/// And for at most this long, so that the progress line stays current.
pub const READ_EVERY: Duration = Duration::from_secs(2);

thread_local! {
    /// Reads of step losses made on this thread (tests count them).
    static READS: Cell<usize> = const { Cell::new(0) };
}

/// How many times this thread has read step losses from the device.
pub fn reads_on_this_thread() -> usize {
    READS.with(Cell::get)
}

/// What the metrics log records of a step beside its loss.
#[derive(Debug, Clone, Copy)]
pub struct StepRow {
    pub step: usize,
    pub epoch: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// Step losses still on the device, in step order.
pub struct StepLosses<B: Backend> {
    waiting: Vec<(StepRow, Tensor<B, 1>)>,
    last_read: Instant,
    latest: Option<f32>,
}

impl<B: Backend> Default for StepLosses<B> {
    fn default() -> Self {
        StepLosses {
            waiting: Vec::new(),
            last_read: Instant::now(),
            latest: None,
        }
    }
}

impl<B: Backend> StepLosses<B> {
    /// A step's loss (one element), left on the device.
    pub fn push(&mut self, row: StepRow, loss: Tensor<B, 1>) {
        self.waiting.push((row, loss));
    }

    /// Whether the waiting losses should be read now.
    pub fn due(&self) -> bool {
        self.waiting.len() >= READ_EVERY_STEPS
            || (!self.waiting.is_empty() && self.last_read.elapsed() >= READ_EVERY)
    }

    /// The last loss read, for the progress line.
    pub fn latest(&self) -> Option<f32> {
        self.latest
    }

    /// Reads every waiting loss in one read, appends them to `losses` and logs their steps.
    pub fn read(&mut self, losses: &mut Vec<f32>, log: Option<&MetricsLog>) -> Result<()> {
        self.last_read = Instant::now();
        if self.waiting.is_empty() {
            return Ok(());
        }
        let (rows, tensors): (Vec<StepRow>, Vec<Tensor<B, 1>>) = self.waiting.drain(..).unzip();
        READS.with(|reads| reads.set(reads.get() + 1));
        let values = Tensor::cat(tensors, 0)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| Error::usage(format!("the step losses could not be read: {e:?}")))?;
        for (row, &loss) in rows.iter().zip(&values) {
            losses.push(loss);
            if let Some(log) = log {
                log.step(row.step, row.epoch, loss, row.lr, row.seconds)?;
            }
        }
        self.latest = values.last().copied();
        Ok(())
    }
}
