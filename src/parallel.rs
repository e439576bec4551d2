//! Blocking reads of many small kernel files (cgroupfs, /proc) spread over the cores: the
//! stats of hundreds of containers or pods in one call.

/// Below this many items one thread does them all (a thread costs more than a few reads).
const PER_THREAD: usize = 32;

/// `read` of each item, in their order, by up to one scoped thread per core; call from a
/// blocking context (`tokio::task::spawn_blocking`).
pub fn map<T: Sync, R: Send>(items: &[T], read: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = items.len().div_ceil(PER_THREAD).clamp(1, cores);
    if threads == 1 {
        return items.iter().map(read).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let read = &read;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(read).collect::<Vec<R>>()))
            .collect();
        parts
            .into_iter()
            // A panic in `read` is a bug; it is re-raised here, as it would be in one thread.
            .flat_map(|part| part.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_order_of_the_items() {
        for n in [0, 1, 31, 32, 33, 500] {
            let items: Vec<usize> = (0..n).collect();
            let out = super::map(&items, |i| i * 2);
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>(), "{n}");
        }
    }
}
