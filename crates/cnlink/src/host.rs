//! What the proc drivers read about the machine (the kernel release, the CPUs online, this thread's CPU affinity),
//! and moving this thread to one CPU for a send.

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet as Affinity};

use crate::engine::{CpuSet, KernelRelease};

/// The running kernel's release (`uname -r`).
pub(crate) fn kernel_release() -> Option<KernelRelease> {
    KernelRelease::parse(rustix::system::uname().release().to_str().ok()?)
}

/// The CPUs online (`/sys/devices/system/cpu/online`).
pub(crate) fn online_cpus() -> Option<CpuSet> {
    CpuSet::parse_list(&std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?)
}

/// The CPUs the calling thread may run on.
pub(crate) fn thread_affinity() -> Option<CpuSet> {
    let set = sched_getaffinity(None).ok()?;
    Some((0..Affinity::MAX_CPU).filter(|&c| set.is_set(c)).map(|c| c as u32).collect())
}

/// Moves the calling thread from CPU to CPU, and gives it its affinity back when dropped.
#[derive(Default)]
pub(crate) struct Pinning {
    original: Option<Affinity>,
}

impl Pinning {
    /// Moves the calling thread to `cpu` (the move is done when this returns: the kernel migrates a thread whose
    /// affinity excludes its CPU before the call returns). False when it may not run there.
    pub(crate) fn pin(&mut self, cpu: u32) -> bool {
        if self.original.is_none() {
            match sched_getaffinity(None) {
                Ok(set) => self.original = Some(set),
                Err(_) => return false,
            }
        }
        let cpu = cpu as usize;
        if cpu >= Affinity::MAX_CPU {
            return false;
        }
        let mut one = Affinity::new();
        one.set(cpu);
        sched_setaffinity(None, &one).is_ok()
    }
}

impl Drop for Pinning {
    fn drop(&mut self) {
        if let Some(set) = &self.original {
            let _ = sched_setaffinity(None, set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine() {
        assert!(kernel_release().is_some());
        let online = online_cpus().unwrap();
        let mine = thread_affinity().unwrap();
        assert!(!mine.is_empty());
        assert!(mine.is_subset(&online), "{mine} of {online}");
    }

    #[test]
    fn pinning_moves_and_restores() {
        std::thread::spawn(|| {
            let before = thread_affinity().unwrap();
            let last = before.iter().last().unwrap();
            {
                let mut p = Pinning::default();
                assert!(p.pin(last));
                assert_eq!(rustix::thread::sched_getcpu() as u32, last);
                assert_eq!(thread_affinity().unwrap().iter().collect::<Vec<_>>(), [last]);
                assert!(!p.pin(u32::MAX));
            }
            assert_eq!(thread_affinity().unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
