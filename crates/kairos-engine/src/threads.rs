//! Who owns the engine's threads: [`EngineThreads`] holds the router's,
//! the shards' and the announcer's join handles, and
//! [`Engine::stop`](crate::Engine::stop) ends them in order:
//!
//! 1. the router stops between two groups (its loop is dropped at an await
//!    point, never in the middle of routing one), which drops its channels
//!    to the shards;
//! 2. the shards finish the batches queued for them and end;
//! 3. the announcer appends what the shards announced and ends.
//!
//! Nothing here needs to reach the disk: the state is rebuilt from the log
//! at start, and announcements a stop cuts short are re-announced by the
//! next start's reconciliation (announcer.rs).

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long each stage of a stop may take before it is left to the
/// process's exit: a stop must not hang on one stuck thread (Ctrl-C ends
/// the server within seconds), and nothing durable depends on it.
pub const STAGE_STOP_MAX: Duration = Duration::from_secs(3);

/// How often a stop looks whether a thread has ended.
const POLL: Duration = Duration::from_millis(5);

/// A thread with a stop signal.
pub(crate) struct Stoppable {
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) handle: JoinHandle<()>,
}

/// The engine's threads, held by the first [`crate::Engine`] handle's
/// shared slot until [`crate::Engine::stop`] takes them.
pub(crate) struct EngineThreads {
    pub(crate) router: Stoppable,
    pub(crate) shards: Vec<JoinHandle<()>>,
    pub(crate) announcer: Stoppable,
}

impl EngineThreads {
    /// Ends the threads in order; `flushed` says whether every announcement
    /// sent is durable. Returns whether every thread ended in time.
    pub(crate) fn stop(self, flushed: impl Fn() -> bool) -> bool {
        let _ = self.router.stop.send(true);
        let mut clean = join_within("router", self.router.handle);
        let deadline = Instant::now() + STAGE_STOP_MAX;
        for shard in self.shards {
            clean &= join_before("shard", shard, deadline);
        }
        let deadline = Instant::now() + STAGE_STOP_MAX;
        while !flushed() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        let _ = self.announcer.stop.send(true);
        clean & join_within("announcer", self.announcer.handle)
    }
}

/// Joins `handle` if it ends within [`STAGE_STOP_MAX`]; else leaves it to
/// the process's exit and says so.
pub fn join_within(name: &str, handle: JoinHandle<()>) -> bool {
    join_before(name, handle, Instant::now() + STAGE_STOP_MAX)
}

fn join_before(name: &str, handle: JoinHandle<()>, deadline: Instant) -> bool {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            tracing::warn!(
                thread = name,
                "did not stop in time; left to the process's exit"
            );
            return false;
        }
        std::thread::sleep(POLL);
    }
    if handle.join().is_err() {
        tracing::error!(thread = name, "ended by a panic");
        return false;
    }
    true
}

/// Runs `work` until it ends or `stop` is set, whichever is first; `work`
/// is dropped at the await point it waits at.
pub(crate) async fn until_stopped(
    work: impl std::future::Future<Output = ()>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = work => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
}
