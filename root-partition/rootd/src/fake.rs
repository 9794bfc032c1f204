//! [`Fake`]: an in-process hypervisor for host tests. Behind it sit the real
//! `partition::PartitionManager` (with the partition crate's fakes for pool, tables, host
//! memory) and the real `hypercall::handle_hypercall` dispatcher, reached through a fake
//! two-page window, so rootd's calls meet the real validation, privilege checks and
//! lifecycle rules.
//!
//! Nothing runs guest code, so MicaRunPartitions is simulated (the dispatcher refuses it,
//! as the backend carries it out on hardware). Each call looks at the running children in
//! ID order and does one thing:
//! 1. a running child whose [`FakeScript`] still has console text "prints" it (through a
//!    real MicaDebugOutput call made as that child) and the call returns `ConsoleOutput`;
//! 2. else the first running child stops with its script's reason (by default "exited with
//!    status 0") and the call returns `PartitionStopped`;
//! 3. else it returns `Idle`. It never returns `Interrupted`.
//!
//! So a started partition "exits with status 0 after one call" unless a script says
//! otherwise.

use std::collections::BTreeMap;

use hypercall::abi::{DebugOutputHeader, RunExitReason};
use hypercall::control::{HypercallControl, result_value};
use hypercall::fake::FakeGuestMemory;
use hypercall::{
    CallCode, CallerContext, DEBUG_OUTPUT_MAX, HvStatus, HypercallHandler, PAGE_SIZE, PartitionId,
    PartitionPrivileges, handle_hypercall,
};
use partition::fake::{FakeHostMemory, FakePool, FakeSecondLevel};
use partition::{CHILD_PRIVILEGES, HostInfo, Limits, PartitionManager, ROOT_PARTITION, StopReason};
use zerocopy::IntoBytes;

use crate::hv::Hypervisor;

/// The fake window's physical address (as the real one, somewhere in root RAM).
pub const FAKE_WINDOW: u64 = 0x3FE0_0000;
/// Where the fake pool starts.
const POOL_BASE: u64 = 0x1_0000_0000;
/// A child's fake parameter page (for its simulated debug-output calls).
const CHILD_PAGE: u64 = 0x1000;

/// The partition manager the fake drives.
pub type FakeManager = PartitionManager<FakePool, FakeSecondLevel, FakeHostMemory>;

/// What a simulated child does once started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeScript {
    /// Console text it prints first.
    pub console: Vec<u8>,
    /// How it then stops.
    pub stop: StopReason,
}

impl Default for FakeScript {
    fn default() -> Self {
        Self {
            console: Vec::new(),
            stop: StopReason::Exited(0),
        }
    }
}

/// An in-process hypervisor (see the module documentation).
#[derive(Debug)]
pub struct Fake {
    manager: FakeManager,
    window: FakeGuestMemory,
    scripts: BTreeMap<u64, FakeScript>,
    next_script: Vec<FakeScript>,
}

impl Fake {
    /// A hypervisor with a pool of `pool_pages` pages and two protected ranges.
    ///
    /// # Panics
    /// Never for the fixed root RAM used here.
    #[must_use]
    pub fn new(pool_pages: u64) -> Self {
        let mut manager = PartitionManager::new(
            Limits::default(),
            FakePool::new(POOL_BASE, pool_pages),
            FakeSecondLevel::new(),
            FakeHostMemory::new(),
            &[(0, 0x8000_0000)],
        )
        .expect("fixed root RAM is valid");
        let mut protected = [(0, 0); hypercall::abi::MAX_PROTECTED_RANGES];
        protected[0] = (0x0100_0000, 0x0200_0000);
        protected[1] = (POOL_BASE, POOL_BASE + pool_pages * PAGE_SIZE);
        manager.set_host_info(HostInfo {
            backend: hypercall::abi::BACKEND_SVM,
            features: (hypercall::abi::HostFeatures::NESTED_PAGING
                | hypercall::abi::HostFeatures::NRIP_SAVE)
                .bits(),
            protected,
            protected_count: 2,
        });
        Self {
            manager,
            window: FakeGuestMemory::with_ram(FAKE_WINDOW, 2 * PAGE_SIZE as usize),
            scripts: BTreeMap::new(),
            next_script: Vec::new(),
        }
    }

    /// The manager, for inspection.
    #[must_use]
    pub const fn manager(&self) -> &FakeManager {
        &self.manager
    }

    /// The manager, mutably (e.g. to read a vCPU's registers).
    pub const fn manager_mut(&mut self) -> &mut FakeManager {
        &mut self.manager
    }

    /// The script of the next partition started without one of its own (queued, FIFO).
    pub fn push_script(&mut self, script: FakeScript) {
        self.next_script.push(script);
    }

    const fn root_caller() -> CallerContext {
        CallerContext {
            partition_id: ROOT_PARTITION,
            vp_index: 0,
            privileges: PartitionPrivileges::ROOT,
        }
    }

    /// Runs one call through the real dispatcher as the root, re-issuing it while the
    /// dispatcher asks for a continuation (as re-executing the OUT would).
    fn dispatch(&mut self, mut rcx: u64, rdx: u64, r8: u64) -> u64 {
        loop {
            let outcome = handle_hypercall(
                rcx,
                rdx,
                r8,
                &Self::root_caller(),
                &mut self.window,
                &mut self.manager,
            );
            match outcome.continue_rcx {
                Some(next) => rcx = next,
                None => return outcome.rax,
            }
        }
    }

    fn running_children(&self) -> Vec<PartitionId> {
        self.manager
            .partitions()
            .filter(|p| p.id() != ROOT_PARTITION && p.state() == partition::PartitionState::Running)
            .map(partition::Partition::id)
            .collect()
    }

    fn script_of(&mut self, id: PartitionId) -> &mut FakeScript {
        if !self.scripts.contains_key(&id.0) {
            let script = if self.next_script.is_empty() {
                FakeScript::default()
            } else {
                self.next_script.remove(0)
            };
            self.scripts.insert(id.0, script);
        }
        self.scripts.entry(id.0).or_default()
    }

    /// The child prints `text` with a real debug-output hypercall of its own.
    fn child_prints(&mut self, id: PartitionId, text: &[u8]) {
        let mut page = FakeGuestMemory::with_ram(CHILD_PAGE, PAGE_SIZE as usize);
        for chunk in text.chunks(DEBUG_OUTPUT_MAX) {
            let header = DebugOutputHeader {
                length: chunk.len() as u32,
                reserved: 0,
            };
            page.poke(CHILD_PAGE, header.as_bytes());
            page.poke(CHILD_PAGE + 8, chunk);
            let caller = CallerContext {
                partition_id: id,
                vp_index: 0,
                privileges: CHILD_PRIVILEGES,
            };
            let rcx = hypercall::control::simple_call(CallCode::MicaDebugOutput.raw(), false);
            let _ = handle_hypercall(rcx, CHILD_PAGE, 0, &caller, &mut page, &mut self.manager);
        }
    }

    fn run_partitions(&mut self) -> (u64, u64, u64) {
        let ok = result_value(HvStatus::Success, 0);
        let running = self.running_children();
        for &id in &running {
            let text = core::mem::take(&mut self.script_of(id).console);
            if !text.is_empty() {
                self.child_prints(id, &text);
                return (ok, RunExitReason::ConsoleOutput as u64, id.0);
            }
        }
        if let Some(&id) = running.first() {
            let reason = self.script_of(id).stop;
            self.manager.stop(id, reason);
            return (ok, RunExitReason::PartitionStopped as u64, id.0);
        }
        (ok, RunExitReason::Idle as u64, 0)
    }
}

impl Hypervisor for Fake {
    fn call(&mut self, control: u64, input: &[u8], output: &mut [u8]) -> u64 {
        let page = PAGE_SIZE as usize;
        let input = &input[..input.len().min(page)];
        self.window.poke(FAKE_WINDOW, input);
        let rax = self.dispatch(control, FAKE_WINDOW, FAKE_WINDOW + PAGE_SIZE);
        let len = output.len().min(page);
        output[..len].copy_from_slice(&self.window.peek(FAKE_WINDOW + PAGE_SIZE, len));
        rax
    }

    fn fast(&mut self, control: u64, rdx: u64, r8: u64) -> (u64, u64, u64) {
        let is_run = HypercallControl::from_raw(control)
            .is_ok_and(|c| c.call_code == CallCode::MicaRunPartitions.raw() && c.fast);
        if is_run {
            return self.run_partitions();
        }
        (self.dispatch(control, rdx, r8), rdx, r8)
    }
}

/// Compile-time check that the manager is the handler the dispatcher drives.
const _: fn(&mut FakeManager) -> &mut dyn HypercallHandler = |m| m;

/// A minimal valid guest image: one R+X segment at 2 MiB holding `hlt; jmp $-3` (for tests
/// that need an image file and have no built test guest).
#[must_use]
pub fn tiny_guest_elf() -> Vec<u8> {
    const IMAGE_BASE: u64 = 0x20_0000;
    const CODE: [u8; 3] = [0xF4, 0xEB, 0xFD];
    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&IMAGE_BASE.to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers right after this header
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    // ehsize, phentsize, phnum, shentsize, shnum, shstrndx.
    for half in [64u16, 56, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R+X
    // offset (64 + 56), vaddr, paddr, filesz, memsz, align.
    for quad in [120u64, IMAGE_BASE, IMAGE_BASE, 3, 3, 0x1000] {
        elf.extend_from_slice(&quad.to_le_bytes());
    }
    elf.extend_from_slice(&CODE);
    elf
}
