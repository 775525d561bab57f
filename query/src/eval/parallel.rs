//! Per-series work spread over the query's threads: selected series are
//! decoded and reduced to step values (a selector's lookback, a range
//! function's windows) on up to `threads` scoped threads, and the results
//! are handed back to the evaluator in series order.
//!
//! **Architecture Invariant:** results reach the caller in the order of
//! the input, whatever the thread count, so aggregations fold series in
//! the same order (floating-point sums are bit-identical to a serial run).
//! Work is done in bounded batches so at most `batch` results are held at
//! once, and each worker checks cancellation and the deadline as it goes.

use std::time::Instant;

use super::CancelToken;
use crate::error::{Error, Result};

/// The fewest items worth spreading over threads.
const MIN_PARALLEL: usize = 16;

/// Cancellation and deadline checks that a worker thread can carry.
#[derive(Clone)]
pub(crate) struct Ticker {
    cancel: Option<CancelToken>,
    deadline: Option<Instant>,
    n: u32,
}

impl Ticker {
    pub(crate) fn new(cancel: Option<CancelToken>, deadline: Option<Instant>) -> Self {
        Ticker {
            cancel,
            deadline,
            n: 0,
        }
    }

    /// Checks cancellation and the deadline now.
    pub(crate) fn check(&self) -> Result<()> {
        if let Some(c) = &self.cancel
            && c.is_canceled()
        {
            return Err(Error::Canceled {
                phase: "expression evaluation",
            });
        }
        if let Some(d) = self.deadline
            && Instant::now() >= d
        {
            return Err(Error::Timeout {
                phase: "expression evaluation",
            });
        }
        Ok(())
    }

    /// A cheap check for hot loops: looks at the clock every 1024 calls.
    #[inline]
    pub(crate) fn tick(&mut self) -> Result<()> {
        self.n = self.n.wrapping_add(1);
        if self.n.is_multiple_of(1024) {
            self.check()?;
        }
        Ok(())
    }
}

/// Maps `work` over `items` (with their index) on up to `threads` threads
/// and calls `emit` with each index and result in input order on the
/// calling thread, holding at most about `batch` results at once. Each
/// thread gets its own `S` scratch (reused buffers) and its own clone of
/// `ticker`. The first error (of `work` or `emit`) stops the run.
///
/// The workers take small runs of items in order and go on while the
/// calling thread emits (an aggregation folds what they made), so neither
/// side waits for the other except when the window of held results is
/// full. Before, work and emission alternated by batch and one core idled
/// while the other folded.
pub(crate) fn map_ordered<T, S, R>(
    items: &[T],
    threads: usize,
    batch: usize,
    ticker: &Ticker,
    work: impl Fn(usize, &T, &mut S, &mut Ticker) -> Result<R> + Sync,
    mut emit: impl FnMut(usize, R) -> Result<()>,
) -> Result<()>
where
    T: Sync,
    S: Default,
    R: Send,
{
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let threads = threads.max(1);
    let batch = batch.max(threads);
    // Starting threads costs tens of microseconds: not worth it for the
    // handful of series most rule and panel queries select.
    if threads == 1 || items.len() < MIN_PARALLEL {
        let mut scratch = S::default();
        let mut t = ticker.clone();
        for (i, item) in items.iter().enumerate() {
            emit(i, work(i, item, &mut scratch, &mut t)?)?;
        }
        return Ok(());
    }
    // Runs of `piece` items are the unit of work; `window` runs may be
    // started and not yet emitted.
    let piece = (batch / (4 * threads)).clamp(1, 64);
    let runs = items.len().div_ceil(piece);
    let window = (batch / piece).max(2 * threads).min(runs);
    let next_run = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (permit_tx, permit_rx) = crossbeam_channel::unbounded::<()>();
    let (result_tx, result_rx) = crossbeam_channel::unbounded::<(usize, Result<Vec<R>>)>();
    for _ in 0..window {
        // The receiver is alive: it is ours.
        let _ = permit_tx.send(());
    }
    let work = &work;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (permits, results) = (permit_rx.clone(), result_tx.clone());
            let (next_run, stop) = (&next_run, &stop);
            let mut t = ticker.clone();
            scope.spawn(move || {
                let mut scratch = S::default();
                while permits.recv().is_ok() && !stop.load(Ordering::Relaxed) {
                    let run = next_run.fetch_add(1, Ordering::Relaxed);
                    if run >= runs {
                        break;
                    }
                    let start = run * piece;
                    let out = items[start..(start + piece).min(items.len())]
                        .iter()
                        .enumerate()
                        .map(|(k, item)| work(start + k, item, &mut scratch, &mut t))
                        .collect::<Result<Vec<R>>>();
                    let failed = out.is_err();
                    if results.send((run, out)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(result_tx);
        let mut permit_tx = Some(permit_tx);
        let res = (|| {
            // Results that arrived ahead of their turn, by run; an error
            // is returned at its turn, after everything before it.
            let mut waiting: std::collections::VecDeque<Option<Result<Vec<R>>>> =
                std::collections::VecDeque::new();
            let mut emitted = 0usize;
            while emitted < runs {
                let Ok((run, out)) = result_rx.recv() else {
                    return Err(Error::internal("a query worker thread stopped early"));
                };
                let slot = run - emitted;
                if waiting.len() <= slot {
                    waiting.resize_with(slot + 1, || None);
                }
                waiting[slot] = Some(out);
                while let Some(Some(_)) = waiting.front() {
                    let Some(Some(out)) = waiting.pop_front() else {
                        break;
                    };
                    let out = out?;
                    let base = emitted * piece;
                    for (k, r) in out.into_iter().enumerate() {
                        emit(base + k, r)?;
                    }
                    emitted += 1;
                    if let Some(p) = &permit_tx {
                        let _ = p.send(());
                    }
                }
            }
            Ok(())
        })();
        // Workers stop at their next permit.
        stop.store(true, Ordering::Relaxed);
        permit_tx.take();
        drop(permit_rx);
        res
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(threads: usize, batch: usize, n: usize) -> Vec<usize> {
        let items: Vec<usize> = (0..n).collect();
        let mut out = Vec::new();
        map_ordered(
            &items,
            threads,
            batch,
            &Ticker::new(None, None),
            |i, x, scratch: &mut Vec<usize>, _| {
                assert_eq!(i, *x);
                scratch.push(*x);
                Ok(x * 2)
            },
            |i, r| {
                assert_eq!(r, i * 2);
                out.push(r);
                Ok(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn results_come_back_in_input_order_for_any_thread_count() {
        let want: Vec<usize> = (0..1000).map(|x| x * 2).collect();
        for threads in [1, 2, 3, 8] {
            for batch in [1, 7, 64, 5000] {
                assert_eq!(run(threads, batch, 1000), want, "{threads} {batch}");
            }
        }
        assert!(run(4, 16, 0).is_empty());
        assert_eq!(run(2, 8, 10), want[..10]);
    }

    #[test]
    fn the_first_error_stops_the_run() {
        let items: Vec<usize> = (0..100).collect();
        let mut emitted = 0;
        let err = map_ordered(
            &items,
            2,
            10,
            &Ticker::new(None, None),
            |_, x, _: &mut (), _| {
                if *x == 37 {
                    Err(Error::internal("boom"))
                } else {
                    Ok(*x)
                }
            },
            |_, _| {
                emitted += 1;
                Ok(())
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        // Everything before the failing item's run of work may be emitted,
        // nothing at or after the failing item.
        assert!((30..=37).contains(&emitted), "{emitted}");
    }

    #[test]
    fn a_canceled_query_stops_in_the_workers() {
        let cancel = CancelToken::new();
        cancel.cancel();
        let ticker = Ticker::new(Some(cancel), None);
        let items: Vec<usize> = (0..40).collect();
        let err = map_ordered(
            &items,
            2,
            20,
            &ticker,
            |_, _, _: &mut (), t| {
                for _ in 0..2048 {
                    t.tick()?;
                }
                Ok(())
            },
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Canceled { .. }), "{err:?}");
    }
}
