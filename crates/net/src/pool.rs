//! A small pool of reusable threads for the forwarders.
//!
//! Spawning two threads per TCP connection costs more than the spawn: on a busy machine a
//! brand-new thread can wait a whole scheduler slice (milliseconds) before it first runs,
//! while a sleeping thread that is woken runs almost at once. Idle workers wait on a condvar
//! and exit after [`IDLE_EXIT`]; there is no upper bound on workers (each job is a blocking
//! connection loop, so a bound would stall connections instead of queueing work).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// An idle worker exits after this long without work.
const IDLE_EXIT: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    closed: bool,
}

struct Inner {
    state: Mutex<State>,
    cv: Condvar,
    name: String,
    stack: usize,
}

/// Dropping the pool lets idle workers exit at once; running jobs finish normally.
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    pub(crate) fn new(name: &str, stack: usize) -> Self {
        Pool { inner: Arc::new(Inner { state: Mutex::default(), cv: Condvar::new(), name: name.into(), stack }) }
    }

    /// Runs `job` on an idle worker, or on a new one if none is idle.
    pub(crate) fn execute(&self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.jobs.push_back(Box::new(job));
        if st.idle >= st.jobs.len() {
            self.inner.cv.notify_one();
            return Ok(());
        }
        drop(st);
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new().name(self.inner.name.clone()).stack_size(self.inner.stack).spawn(move || worker(&inner));
        if let Err(e) = spawned {
            // Take the job back out (it is the newest one nobody picked up), so the caller
            // can clean up; if a worker already took it, it runs and all is well.
            let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.jobs.len() > st.idle {
                st.jobs.pop_back();
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.inner.cv.notify_all();
    }
}

fn worker(inner: &Inner) {
    let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if st.closed {
            return;
        }
        st.idle += 1;
        let (g, timeout) = inner.cv.wait_timeout(st, IDLE_EXIT).unwrap_or_else(|e| e.into_inner());
        st = g;
        st.idle -= 1;
        if timeout.timed_out() && st.jobs.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_job_and_reuses_workers() {
        let pool = Pool::new("t", 64 * 1024);
        let done = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(std::collections::HashSet::new()));
        for _ in 0..50 {
            let (d, t) = (done.clone(), threads.clone());
            pool.execute(move || {
                t.lock().unwrap().insert(std::thread::current().id());
                d.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while done.load(Ordering::SeqCst) < 50 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(done.load(Ordering::SeqCst), 50);
        assert!(threads.lock().unwrap().len() < 50, "workers were not reused");
    }

    #[test]
    fn blocking_jobs_get_their_own_workers() {
        // Two jobs that wait for each other must both run (no bound on workers).
        let pool = Pool::new("t", 64 * 1024);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (tx2, rx2) = std::sync::mpsc::channel::<()>();
        pool.execute(move || {
            rx.recv().unwrap();
            tx2.send(()).unwrap();
        })
        .unwrap();
        pool.execute(move || tx.send(()).unwrap()).unwrap();
        rx2.recv_timeout(Duration::from_secs(5)).unwrap();
    }
}
