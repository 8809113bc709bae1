//! One way to stop: every background loop of a process runs under a
//! [`Supervisor`], which hands it a stop signal (a
//! [`CancellationToken`]), tracks it (a [`TaskTracker`]) and, at shutdown,
//! stops the [`Stage`]s in order — intake first, observation last — each
//! within a deadline. A loop that does not stop in time is aborted and named
//! in the [`ShutdownReport`], and the next stage is still stopped gracefully.
//!
//! ```
//! use std::time::Duration;
//! use oms::tasks::{Stage, Supervisor};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut supervisor = Supervisor::new();
//! supervisor.spawn(Stage::Settle, "settler", |stop| async move {
//!     // A loop of the user's: runs until told to stop, then finishes its step.
//!     stop.await;
//! });
//! let report = supervisor.shutdown(Duration::from_secs(5)).await;
//! assert!(report.is_clean());
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use oms_core::application::{run_admitter, ProductCatalog};
use oms_core::port::outbound::WaitingRoom;
use tokio::task::AbortHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

/// How often a waiting room's admitter runs a round.
pub const ADMIT_TICK: Duration = Duration::from_millis(50);

/// How long the examples give each [`Stage`] of their background work to
/// stop once the server or consumer has stopped.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// The signal a supervised loop receives: completes when its stage stops.
pub type StopSignal = WaitForCancellationFutureOwned;

/// The stages of a process's background work, in the order they stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// What feeds intake: the product catalogue refresh, the waiting
    /// room's admitter. Stops first, so nothing new is admitted.
    Intake,
    /// Consumers of the order queue: they finish the batch under way.
    Consume,
    /// Keepers that settle what the consumers left: the stock gate
    /// keeper, the trace sweeper, the order life-cycle keeper.
    Settle,
    /// Gauges and health endpoints: stop last, so the others are seen to
    /// the end.
    Observe,
}

impl Stage {
    /// The stage's name in logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Intake => "intake",
            Stage::Consume => "consume",
            Stage::Settle => "settle",
            Stage::Observe => "observe",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Default)]
struct StageTasks {
    token: CancellationToken,
    tracker: TaskTracker,
    tasks: Vec<(&'static str, AbortHandle)>,
}

/// Owns the background loops of a process and stops them in
/// [`Stage`] order. Dropping it without [`shutdown`](Self::shutdown)
/// cancels and aborts everything at once. Needs a tokio runtime to spawn.
#[derive(Debug, Default)]
pub struct Supervisor {
    stages: BTreeMap<Stage, StageTasks>,
}

/// What a [`Supervisor::shutdown`] did not stop in time.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The tasks aborted after the deadline, with their stage.
    pub aborted: Vec<(Stage, &'static str)>,
}

impl ShutdownReport {
    /// Every task stopped by itself before the deadline.
    pub fn is_clean(&self) -> bool {
        self.aborted.is_empty()
    }
}

impl Supervisor {
    /// A supervisor with no tasks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the loop `task` builds from its stop signal, in `stage`;
    /// `name` names it in logs and in the [`ShutdownReport`].
    pub fn spawn<F, Fut>(&mut self, stage: Stage, name: &'static str, task: F) -> &mut Self
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let tasks = self.stages.entry(stage).or_default();
        let stop = tasks.token.clone().cancelled_owned();
        let handle = tasks.tracker.spawn(task(stop));
        tasks.tasks.push((name, handle.abort_handle()));
        self
    }

    /// The token that stops `stage`, e.g. for a loop the caller runs
    /// itself; cancelling it stops that stage's tasks early.
    pub fn token(&mut self, stage: Stage) -> CancellationToken {
        self.stages.entry(stage).or_default().token.clone()
    }

    /// The catalogue refresh and, with a `room`, its admitter every
    /// [`ADMIT_TICK`], in [`Stage::Intake`].
    pub fn front_door(
        &mut self,
        catalog: Arc<ProductCatalog>,
        room: Option<Arc<dyn WaitingRoom>>,
    ) -> &mut Self {
        self.spawn(Stage::Intake, "catalogue refresh", |stop| catalog.run(stop));
        if let Some(room) = room {
            self.spawn(Stage::Intake, "waiting-room admitter", |stop| {
                run_admitter(room, ADMIT_TICK, stop)
            });
        }
        self
    }

    /// Stops the stages in order: each is signalled, then awaited for up
    /// to `deadline`; what has not stopped by then is aborted (and logged)
    /// and the next stage is signalled. At most one `deadline` per stage.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        for (stage, tasks) in std::mem::take(&mut self.stages) {
            tasks.token.cancel();
            tasks.tracker.close();
            if tokio::time::timeout(deadline, tasks.tracker.wait())
                .await
                .is_ok()
            {
                continue;
            }
            for (name, handle) in &tasks.tasks {
                if !handle.is_finished() {
                    tracing::error!(%stage, task = name, ?deadline, "did not stop in time; aborted");
                    handle.abort();
                    report.aborted.push((stage, name));
                }
            }
            tasks.tracker.wait().await;
        }
        report
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for tasks in self.stages.values() {
            tasks.token.cancel();
            for (_, handle) in &tasks.tasks {
                handle.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn stages_stop_in_order_whatever_order_they_were_started() {
        let stopped = Arc::new(Mutex::new(Vec::new()));
        let mut supervisor = Supervisor::new();
        for (stage, name) in [
            (Stage::Observe, "gauges"),
            (Stage::Settle, "keeper"),
            (Stage::Intake, "catalogue"),
            (Stage::Consume, "consumer"),
        ] {
            let stopped = stopped.clone();
            supervisor.spawn(stage, name, move |stop| async move {
                stop.await;
                // A stage still running would let a later one overtake it.
                tokio::task::yield_now().await;
                stopped.lock().unwrap().push(name);
            });
        }
        let report = supervisor.shutdown(Duration::from_secs(5)).await;
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(
            *stopped.lock().unwrap(),
            ["catalogue", "consumer", "keeper", "gauges"]
        );
    }

    #[tokio::test]
    async fn a_task_that_ignores_its_signal_is_aborted_at_the_deadline_and_named() {
        let mut supervisor = Supervisor::new();
        let later_stage_stopped = Arc::new(Mutex::new(false));
        supervisor.spawn(Stage::Consume, "stubborn", |_stop| {
            std::future::pending::<()>()
        });
        supervisor.spawn(Stage::Consume, "polite", |stop| stop);
        let flag = later_stage_stopped.clone();
        supervisor.spawn(Stage::Observe, "gauges", move |stop| async move {
            stop.await;
            *flag.lock().unwrap() = true;
        });
        let started = tokio::time::Instant::now();
        let report = supervisor.shutdown(Duration::from_millis(200)).await;
        assert_eq!(report.aborted, [(Stage::Consume, "stubborn")]);
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(*later_stage_stopped.lock().unwrap());
    }

    #[tokio::test]
    async fn dropping_the_supervisor_stops_its_tasks() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut supervisor = Supervisor::new();
        supervisor.spawn(Stage::Settle, "holder", move |_stop| async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(supervisor);
        // The task's sender is dropped with the aborted task.
        assert!(tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("aborted in time")
            .is_err());
    }

    #[tokio::test]
    async fn a_stage_token_stops_that_stage_early() {
        let mut supervisor = Supervisor::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        supervisor.spawn(Stage::Intake, "admitter", move |stop| async move {
            stop.await;
            let _ = tx.send(());
        });
        supervisor.token(Stage::Intake).cancel();
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("stopped in time")
            .expect("signalled");
        assert!(supervisor.shutdown(Duration::from_secs(1)).await.is_clean());
    }
}
