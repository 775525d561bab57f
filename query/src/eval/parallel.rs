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

/// Maps `work` over `items` (with their index) on up to `threads` threads,
/// in batches of at most `batch` items, and calls `emit` with each index and
/// result in input order on the calling thread. Each thread gets its own `S` scratch (reused buffers)
/// and its own clone of `ticker`. The first error (of `work` or `emit`)
/// stops the run.
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
    let work = &work;
    for (c, chunk) in items.chunks(batch).enumerate() {
        let base = c * batch;
        let per = chunk.len().div_ceil(threads);
        let parts: Vec<Result<Vec<R>>> = std::thread::scope(|scope| {
            let run = move |start: usize, piece: &[T], t: &mut Ticker| {
                let mut scratch = S::default();
                piece
                    .iter()
                    .enumerate()
                    .map(|(k, item)| work(start + k, item, &mut scratch, t))
                    .collect::<Result<Vec<R>>>()
            };
            let mut pieces = chunk.chunks(per).enumerate();
            let mine = pieces.next().map(|(_, p)| p).unwrap_or(&[]);
            let handles: Vec<_> = pieces
                .map(|(k, piece)| {
                    let mut t = ticker.clone();
                    scope.spawn(move || run(base + k * per, piece, &mut t))
                })
                .collect();
            let first = run(base, mine, &mut ticker.clone());
            let mut out = vec![first];
            for h in handles {
                out.push(
                    h.join()
                        .unwrap_or_else(|_| Err(Error::internal("a query worker thread panicked"))),
                );
            }
            out
        });
        let mut i = base;
        for part in parts {
            for r in part? {
                emit(i, r)?;
                i += 1;
            }
        }
    }
    Ok(())
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
        // Everything before the failing item's batch is emitted, nothing at
        // or after the failing item.
        assert!((30..37).contains(&emitted), "{emitted}");
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
