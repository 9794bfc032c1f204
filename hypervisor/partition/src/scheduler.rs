//! Round-robin scheduling of vCPUs on one physical CPU.
//!
//! The scheduler keeps a queue of vCPUs and asks a [`VcpuStates`] (the partition manager)
//! which of them may run, so the manager stays the single authority on run states:
//! halted vCPUs stay queued but are skipped; stopped and deleted ones are dropped from the
//! queue (re-[`enqueue`](Scheduler::enqueue) them when their partition starts again).
//!
//! Time is counted in ticks of the hypervisor's preemption timer: each pick gets a slice
//! of `slice_ticks`; when [`Scheduler::tick`] says the slice is over, the backend forces an
//! exit (`TimerPreempt` → `Yield`) and calls [`Scheduler::next`] again, which moves the
//! current vCPU to the back of the queue. With nothing runnable, `next` answers `None`:
//! the CPU halts until an interrupt (which may wake a vCPU) arrives.

use alloc::collections::VecDeque;

use hypercall::PartitionId;

use crate::vcpu::RunState;

/// A vCPU, named by partition and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VcpuRef {
    /// Its partition.
    pub partition: PartitionId,
    /// Its index.
    pub vp_index: u32,
}

/// Where the scheduler learns vCPU run states.
pub trait VcpuStates {
    /// The run state of `vcpu`, or `None` if it no longer exists.
    fn run_state(&self, vcpu: VcpuRef) -> Option<RunState>;
}

impl<P, S, H> VcpuStates for crate::PartitionManager<P, S, H>
where
    P: crate::MemoryPool,
    S: crate::SecondLevel,
    H: crate::HostPhysMemory,
{
    fn run_state(&self, vcpu: VcpuRef) -> Option<RunState> {
        self.partition(vcpu.partition)?
            .vcpu(vcpu.vp_index)
            .map(crate::Vcpu::run_state)
    }
}

/// A round-robin scheduler for one physical CPU.
#[derive(Clone, Debug)]
pub struct Scheduler {
    queue: VecDeque<VcpuRef>,
    current: Option<VcpuRef>,
    slice_ticks: u32,
    used_ticks: u32,
}

impl Scheduler {
    /// An empty scheduler giving each pick `slice_ticks` ticks (at least 1).
    #[must_use]
    pub fn new(slice_ticks: u32) -> Self {
        Self {
            queue: VecDeque::new(),
            current: None,
            slice_ticks: slice_ticks.max(1),
            used_ticks: 0,
        }
    }

    /// Adds `vcpu` at the back of the queue (no effect if already queued or current).
    pub fn enqueue(&mut self, vcpu: VcpuRef) {
        if self.current != Some(vcpu) && !self.queue.contains(&vcpu) {
            self.queue.push_back(vcpu);
        }
    }

    /// Removes every vCPU of `partition` (deleted or moved to another CPU).
    pub fn remove_partition(&mut self, partition: PartitionId) {
        self.queue.retain(|v| v.partition != partition);
        if self.current.is_some_and(|v| v.partition == partition) {
            self.current = None;
        }
    }

    /// The vCPU picked last, if any.
    #[must_use]
    pub const fn current(&self) -> Option<VcpuRef> {
        self.current
    }

    /// vCPUs known to the scheduler (queued or current).
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len() + usize::from(self.current.is_some())
    }

    /// Whether no vCPU is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One timer tick on the current vCPU; returns `true` when its slice is over (preempt
    /// it).
    pub fn tick(&mut self) -> bool {
        if self.current.is_none() {
            return false;
        }
        self.used_ticks = self.used_ticks.saturating_add(1);
        self.used_ticks >= self.slice_ticks
    }

    /// Ends the current vCPU's slice now (it yielded or halted).
    pub const fn yield_current(&mut self) {
        self.used_ticks = self.slice_ticks;
    }

    /// The vCPU to run next, or `None` to idle. Keeps the current vCPU while its slice
    /// lasts and it stays runnable; otherwise moves it to the back and picks the first
    /// runnable vCPU in queue order (dropping stopped and vanished ones).
    pub fn next(&mut self, states: &impl VcpuStates) -> Option<VcpuRef> {
        if let Some(current) = self.current {
            let state = states.run_state(current);
            if state == Some(RunState::Runnable) && self.used_ticks < self.slice_ticks {
                return Some(current);
            }
            self.current = None;
            if matches!(state, Some(RunState::Runnable | RunState::Halted)) {
                self.queue.push_back(current);
            }
        }
        let mut scanned = 0;
        while scanned < self.queue.len() {
            let Some(candidate) = self.queue.pop_front() else {
                break;
            };
            match states.run_state(candidate) {
                Some(RunState::Runnable) => {
                    self.current = Some(candidate);
                    self.used_ticks = 0;
                    return Some(candidate);
                }
                Some(RunState::Halted) => {
                    self.queue.push_back(candidate);
                    scanned += 1;
                }
                Some(RunState::Stopped) | None => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Default)]
    struct States(BTreeMap<VcpuRef, RunState>);

    impl VcpuStates for States {
        fn run_state(&self, vcpu: VcpuRef) -> Option<RunState> {
            self.0.get(&vcpu).copied()
        }
    }

    fn v(partition: u64, vp_index: u32) -> VcpuRef {
        VcpuRef {
            partition: PartitionId(partition),
            vp_index,
        }
    }

    /// Runs `ticks` timer ticks; returns how many ticks each vCPU ran.
    fn run(sched: &mut Scheduler, states: &States, ticks: u32) -> BTreeMap<VcpuRef, u32> {
        let mut ran = BTreeMap::new();
        for _ in 0..ticks {
            if let Some(cur) = sched.next(states) {
                *ran.entry(cur).or_insert(0) += 1;
                sched.tick();
            }
        }
        ran
    }

    #[test]
    fn a_spinning_vcpu_cannot_starve_another() {
        let mut states = States::default();
        let (spinner, other) = (v(2, 0), v(3, 0));
        states.0.insert(spinner, RunState::Runnable);
        states.0.insert(other, RunState::Runnable);
        let mut sched = Scheduler::new(5);
        sched.enqueue(spinner);
        sched.enqueue(other);
        // The spinner never yields; only the timer takes the CPU from it.
        let ran = run(&mut sched, &states, 100);
        assert_eq!(ran[&spinner], 50);
        assert_eq!(ran[&other], 50);
    }

    #[test]
    fn a_halted_vcpu_is_never_picked_until_woken() {
        let mut states = States::default();
        let (halted, busy) = (v(2, 0), v(2, 1));
        states.0.insert(halted, RunState::Halted);
        states.0.insert(busy, RunState::Runnable);
        let mut sched = Scheduler::new(3);
        sched.enqueue(halted);
        sched.enqueue(busy);
        let ran = run(&mut sched, &states, 30);
        assert!(!ran.contains_key(&halted));
        assert_eq!(ran[&busy], 30);
        states.0.insert(halted, RunState::Runnable);
        let ran = run(&mut sched, &states, 30);
        assert_eq!(ran[&halted], 15);
    }

    #[test]
    fn all_halted_means_idle_and_stopped_vcpus_leave_the_queue() {
        let mut states = States::default();
        states.0.insert(v(2, 0), RunState::Halted);
        states.0.insert(v(3, 0), RunState::Stopped);
        let mut sched = Scheduler::new(3);
        sched.enqueue(v(2, 0));
        sched.enqueue(v(3, 0));
        sched.enqueue(v(4, 0)); // unknown: deleted meanwhile
        assert_eq!(sched.next(&states), None);
        assert_eq!(sched.len(), 1, "only the halted vCPU stays queued");
        assert!(!sched.tick(), "an idle CPU has no slice to expire");
    }

    #[test]
    fn halting_mid_slice_hands_over_at_once() {
        let mut states = States::default();
        let (a, b) = (v(2, 0), v(2, 1));
        states.0.insert(a, RunState::Runnable);
        states.0.insert(b, RunState::Runnable);
        let mut sched = Scheduler::new(10);
        sched.enqueue(a);
        sched.enqueue(b);
        assert_eq!(sched.next(&states), Some(a));
        sched.tick();
        states.0.insert(a, RunState::Halted);
        assert_eq!(sched.next(&states), Some(b));
        sched.yield_current();
        assert_eq!(sched.next(&states), Some(b), "a is halted: b runs again");
        sched.remove_partition(PartitionId(2));
        assert!(sched.is_empty());
        assert_eq!(sched.next(&states), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Over any run, runnable spinning vCPUs' shares differ by at most one slice, and
        /// halted vCPUs never run.
        #[test]
        fn fair_within_one_slice(
            runnable in 1usize..6,
            halted in 0usize..3,
            slice in 1u32..8,
            ticks in 0u32..400,
        ) {
            let mut states = States::default();
            let mut sched = Scheduler::new(slice);
            for i in 0..runnable + halted {
                let vcpu = v(2 + i as u64 % 2, i as u32);
                let state = if i < runnable { RunState::Runnable } else { RunState::Halted };
                states.0.insert(vcpu, state);
                sched.enqueue(vcpu);
            }
            let ran = run(&mut sched, &states, ticks);
            for (vcpu, _) in ran.iter() {
                prop_assert_eq!(states.0[vcpu], RunState::Runnable);
            }
            let shares: Vec<u32> = states
                .0
                .iter()
                .filter(|(_, s)| **s == RunState::Runnable)
                .map(|(vcpu, _)| ran.get(vcpu).copied().unwrap_or(0))
                .collect();
            let max = *shares.iter().max().unwrap();
            let min = *shares.iter().min().unwrap();
            prop_assert!(max - min <= slice, "shares {:?}", shares);
            prop_assert_eq!(shares.iter().sum::<u32>(), ticks);
        }
    }
}
