//! Log lines batched on the runtime's worker threads, written when a worker runs out of work.

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Lines are batched on the runtime's worker threads: one write(2) per line was about a fifth
/// of a skipped event's cost under load. A worker's lines are written when it is about to park
/// (it has nothing left to run, so a line never waits for more than the work already ready),
/// when they pass [`BATCH_MAX_BYTES`], when the thread stops, and before any WARN or ERROR line,
/// which is always written at once (failure lines carry the event for replay). Other threads
/// (main, blocking pool, one-shot mode) write each line directly.
pub const BATCH_MAX_BYTES: usize = 32 * 1024;

/// A batch buffer's usual size; given back down to it once a larger line was written.
const BATCH_KEEP: usize = BATCH_MAX_BYTES + 4096;

thread_local! {
    /// `None` on a thread that does not batch.
    static BATCH: std::cell::RefCell<Batch> = const { std::cell::RefCell::new(Batch(None)) };
}

struct Batch(Option<Vec<u8>>);

impl Batch {
    /// Adds `line`, or writes it at once (after anything held, to keep the order) when it is
    /// `urgent` or this thread does not batch.
    fn write(&mut self, line: &[u8], urgent: bool, out: &mut impl std::io::Write) {
        match &mut self.0 {
            Some(held) if !urgent => {
                held.extend_from_slice(line);
                if held.len() >= BATCH_MAX_BYTES {
                    self.flush(out);
                }
            }
            _ => {
                self.flush(out);
                // As tracing-subscriber does, a log line that cannot be written is dropped.
                let _ = out.write_all(line);
            }
        }
    }

    fn flush(&mut self, out: &mut impl std::io::Write) {
        if let Some(held) = &mut self.0
            && !held.is_empty()
        {
            let _ = out.write_all(held);
            held.clear();
            held.shrink_to(BATCH_KEEP);
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.flush(&mut std::io::stderr());
    }
}

/// For tokio's `on_thread_unpark`: from now on this worker thread batches its lines. (Set on
/// unpark, not on thread start: blocking-pool threads start the same way but never park.)
pub fn batch_this_thread() {
    let _ = BATCH.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut()
            && b.0.is_none()
        {
            b.0 = Some(Vec::with_capacity(BATCH_KEEP));
        }
    });
}

/// For tokio's `on_thread_park` and `on_thread_stop`: writes this thread's held lines.
pub fn flush_this_thread() {
    let _ = BATCH.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.flush(&mut std::io::stderr());
        }
    });
}

/// stderr through this thread's [`Batch`].
pub(super) struct Stderr;

pub(super) struct Line {
    pub(super) urgent: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            urgent: matches!(*meta.level(), Level::ERROR | Level::WARN),
        }
    }
}

impl std::io::Write for Line {
    /// tracing-subscriber writes each line whole, with one `write_all`.
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut out = std::io::stderr();
        let held = BATCH.try_with(|b| match b.try_borrow_mut() {
            Ok(mut b) => {
                b.write(line, self.urgent, &mut out);
                true
            }
            Err(_) => false,
        });
        if held != Ok(true) {
            out.write_all(line)?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_lines_keep_their_order_and_failure_lines_are_never_held() {
        let mut out = Vec::new();
        // A thread that does not batch writes each line at once.
        let mut direct = Batch(None);
        direct.write(b"a\n", false, &mut out);
        assert_eq!(out, b"a\n");
        let mut b = Batch(Some(Vec::new()));
        b.write(b"info 1\n", false, &mut out);
        b.write(b"info 2\n", false, &mut out);
        assert_eq!(out, b"a\n", "INFO lines are held");
        // A WARN/ERROR line goes out at once, after what was held.
        b.write(b"error\n", true, &mut out);
        assert_eq!(out, b"a\ninfo 1\ninfo 2\nerror\n");
        b.write(b"info 3\n", false, &mut out);
        b.flush(&mut out);
        assert!(out.ends_with(b"error\ninfo 3\n"));
        b.flush(&mut out);
        assert!(out.ends_with(b"error\ninfo 3\n"), "written once");
        // Never more than BATCH_MAX_BYTES held.
        out.clear();
        let line = [b'x'; 1000];
        for _ in 0..100 {
            b.write(&line, false, &mut out);
            assert!(b.0.as_ref().unwrap().len() < BATCH_MAX_BYTES);
        }
        b.flush(&mut out);
        assert_eq!(out.len(), 100 * 1000);
        // A large line does not keep the buffer large.
        b.write(&vec![b'x'; 1 << 20], false, &mut out);
        b.flush(&mut out);
        assert!(b.0.as_ref().unwrap().capacity() <= BATCH_KEEP);
    }

    #[test]
    fn a_runtime_worker_batches_and_writes_when_it_parks() {
        // Only the runtime's park/unpark hooks switch a thread to batching.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .on_thread_unpark(batch_this_thread)
            .on_thread_park(flush_this_thread)
            .build()
            .unwrap();
        let batching = || BATCH.with(|b| b.borrow().0.is_some());
        let held = || BATCH.with(|b| b.borrow().0.as_ref().map_or(0, Vec::len));
        // A worker batches once it has parked and woken up: give it the time to park (its
        // first task may run before that, and a loaded machine may be slow to schedule it).
        let mut woke_batching = false;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            woke_batching = rt.block_on(rt.spawn(async move { batching() })).unwrap();
            if woke_batching {
                break;
            }
        }
        assert!(woke_batching);
        assert!(!batching(), "other threads write directly");
        assert!(
            !rt.block_on(rt.spawn_blocking(batching)).unwrap(),
            "blocking-pool threads write directly"
        );
        // An INFO line a worker holds is written when it runs out of work.
        let held_then = rt
            .block_on(rt.spawn(async move {
                let line = b"(telemetry test) an INFO line held, written when the worker parked\n";
                std::io::Write::write_all(&mut Line { urgent: false }, line).unwrap();
                held()
            }))
            .unwrap();
        assert!(held_then > 0);
        let mut held_now = held_then;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            held_now = rt.block_on(rt.spawn(async move { held() })).unwrap();
            if held_now == 0 {
                break;
            }
        }
        assert_eq!(held_now, 0);
    }
}
