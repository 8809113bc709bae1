//! Background work of a process: the front door's loops (product catalogue
//! refresh, waiting-room admitter), stopped when the handle is dropped.

use std::sync::Arc;
use std::time::Duration;

use oms_core::application::{run_admitter, ProductCatalog};
use oms_core::port::outbound::WaitingRoom;
use tokio::task::JoinHandle;

/// How often a waiting room's admitter runs a round.
pub const ADMIT_TICK: Duration = Duration::from_millis(50);

/// Tasks running in the background; dropping the handle (or
/// [`stop`](Self::stop)) aborts them.
#[derive(Debug, Default)]
pub struct BackgroundTasks(Vec<JoinHandle<()>>);

impl BackgroundTasks {
    /// Refreshes `catalog` every period and, with a `room`, runs its
    /// admitter every [`ADMIT_TICK`]. Needs a tokio runtime.
    pub fn front_door(catalog: Arc<ProductCatalog>, room: Option<Arc<dyn WaitingRoom>>) -> Self {
        let mut tasks = vec![tokio::spawn(catalog.run(std::future::pending()))];
        if let Some(room) = room {
            tasks.push(tokio::spawn(run_admitter(
                room,
                ADMIT_TICK,
                std::future::pending(),
            )));
        }
        Self(tasks)
    }

    /// Runs `task` until the handle is dropped. Needs a tokio runtime.
    pub fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Self(vec![tokio::spawn(task)])
    }

    /// Stops every task.
    pub fn stop(self) {}
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
