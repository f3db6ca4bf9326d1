//! The background trainer: one `std::thread` (off the async runtime) that takes a copy of the
//! weights, the optimizer state and pre-drawn batches, runs the gradient steps and hands the
//! new weights back; the model swaps them in at its next `update`.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow};
use burn::tensor::Device;

use crate::models::lstm::batch::Batch;
use crate::models::lstm::net::Weights;
use crate::models::lstm::train::{Adam, AdamSettings, train_step};

/// A finished job: new weights, optimizer state, and the last batch loss.
pub type Done = Result<(Weights, Adam, f32)>;

struct Job {
    weights: Weights,
    adam: Adam,
    settings: AdamSettings,
    batches: Vec<Batch>,
    tau: Vec<f32>,
    device: Device,
}

/// The trainer thread and its channels; the thread starts with the first job and ends when
/// this is dropped (after finishing the job in hand).
#[derive(Default)]
pub struct Background {
    jobs: Option<Sender<Job>>,
    done: Option<Receiver<Done>>,
    thread: Option<JoinHandle<()>>,
    busy: bool,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("busy", &self.busy)
            .finish()
    }
}

fn run(job: Job) -> Done {
    let Job {
        mut weights,
        mut adam,
        settings,
        batches,
        tau,
        device,
    } = job;
    let mut loss = f32::NAN;
    for b in &batches {
        loss = train_step(&mut weights, &mut adam, &settings, b, &tau, &device)?;
    }
    Ok((weights, adam, loss))
}

impl Background {
    /// Hands a job to the thread; skipped (returns false) while the previous one runs.
    pub fn submit(
        &mut self,
        weights: Weights,
        adam: Adam,
        settings: AdamSettings,
        batches: Vec<Batch>,
        tau: Vec<f32>,
        device: Device,
    ) -> bool {
        if self.busy {
            tracing::debug!("lstm: training still running; this firing is skipped");
            return false;
        }
        if self.jobs.is_none() {
            let (job_tx, job_rx) = channel::<Job>();
            let (done_tx, done_rx) = channel::<Done>();
            let spawned = std::thread::Builder::new()
                .name("lstm-trainer".into())
                .spawn(move || {
                    while let Ok(job) = job_rx.recv() {
                        let result =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(job)))
                                .unwrap_or_else(|_| Err(anyhow!("training panicked")));
                        if done_tx.send(result).is_err() {
                            break;
                        }
                    }
                });
            match spawned {
                Ok(handle) => {
                    self.thread = Some(handle);
                    self.jobs = Some(job_tx);
                    self.done = Some(done_rx);
                }
                Err(e) => {
                    tracing::warn!("lstm: cannot start the trainer thread: {e}");
                    return false;
                }
            }
        }
        let job = Job {
            weights,
            adam,
            settings,
            batches,
            tau,
            device,
        };
        let sent = self.jobs.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        self.busy = sent;
        sent
    }

    /// A finished job, if any.
    pub fn poll(&mut self) -> Option<Done> {
        let rx = self.done.as_ref()?;
        match rx.try_recv() {
            Ok(done) => {
                self.busy = false;
                Some(done)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.busy = false;
                self.jobs = None;
                self.done = None;
                Some(Err(anyhow!("the trainer thread stopped")))
            }
        }
    }

    /// Waits for the job in hand (tests and shutdown).
    pub fn wait(&mut self) -> Option<Done> {
        if !self.busy {
            return None;
        }
        let done = self.done.as_ref()?.recv().ok();
        self.busy = false;
        done
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Closing the job channel ends the thread's loop; it is not joined so that dropping a
        // model never blocks on a training run.
        self.jobs = None;
        self.thread = None;
    }
}
