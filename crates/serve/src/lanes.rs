//! Bounded queues for blocking work. Model work runs on tokio's blocking threads, never
//! on the async runtime; a lane lets `workers` jobs run and `queue` more wait, and turns
//! the next one away at once (503) instead of letting waits grow without bound.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::ApiError;

/// One kind of blocking work with its own workers and queue.
pub struct Lane {
    name: &'static str,
    /// Permits for running and waiting jobs together.
    admitted: Arc<Semaphore>,
    /// Permits for running jobs.
    running: Arc<Semaphore>,
    /// Running and waiting jobs the lane holds at most.
    capacity: usize,
}

impl Lane {
    /// A lane running `workers` jobs at a time (at least one) with `queue` more waiting.
    pub fn new(name: &'static str, workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            name,
            admitted: Arc::new(Semaphore::new(workers + queue)),
            running: Arc::new(Semaphore::new(workers)),
            capacity: workers + queue,
        }
    }

    /// The lane's name, for messages and metrics.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Jobs running or waiting now.
    pub fn depth(&self) -> usize {
        self.capacity - self.admitted.available_permits()
    }

    /// Runs `job` on a blocking thread once a worker is free, or fails at once with
    /// [`ApiError::Busy`] when the queue is full. A job that has started runs to the end
    /// and keeps its worker even if the client goes away, so the lane's bound holds.
    pub async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    {
        let admitted = Arc::clone(&self.admitted)
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy { lane: self.name })?;
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal(format!("the {} lane is closed", self.name)))?;
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            job()
        })
        .await
        .map_err(|err| ApiError::Internal(format!("a {} job failed: {err}", self.name)))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    // With one worker and a queue of one, a third job is refused while two are held, and
    // the lane takes work again once they finish.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_lane_refuses_then_recovers() {
        let lane = Arc::new(Lane::new("test", 1, 1));
        let (release, wait) = mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        let mut held = Vec::new();
        for _ in 0..2 {
            let lane = Arc::clone(&lane);
            let wait = Arc::clone(&wait);
            held.push(tokio::spawn(async move {
                lane.run(move || {
                    wait.lock().unwrap().recv().unwrap();
                    Ok(())
                })
                .await
            }));
        }
        while lane.depth() < 2 {
            tokio::task::yield_now().await;
        }
        let refused = lane.run(|| Ok(())).await;
        assert!(matches!(refused, Err(ApiError::Busy { lane: "test" })));
        release.send(()).unwrap();
        release.send(()).unwrap();
        for job in held {
            job.await.unwrap().unwrap();
        }
        assert_eq!(lane.run(|| Ok(7)).await.unwrap(), 7);
    }
}
