//! In-memory fakes of the hardware-facing traits, for this crate's and other crates' host
//! tests (feature `fake`). They use `std` and panic on misuse by the code under test
//! (double free, cross-frame access): those are bugs, not guest input.

use std::boxed::Box;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::vec;
use std::vec::Vec;

use crate::cpuid::CpuidResult;
use crate::exit::Platform;
use crate::memory::{
    Flush, GpaPerms, HostPhysMemory, MemoryPool, PAGE_BYTES, PAGE_SIZE, SecondLevel,
    SecondLevelError,
};

/// A pool of `count` frames starting at `base`, handed out lowest first.
#[derive(Clone, Debug)]
pub struct FakePool {
    free: BTreeSet<u64>,
    allocated: BTreeSet<u64>,
}

impl FakePool {
    /// Frames `base, base + 4 KiB, ...` (`count` of them).
    #[must_use]
    pub fn new(base: u64, count: u64) -> Self {
        Self {
            free: (0..count).map(|i| base + i * PAGE_SIZE).collect(),
            allocated: BTreeSet::new(),
        }
    }

    /// Frames currently handed out.
    #[must_use]
    pub fn allocated(&self) -> &BTreeSet<u64> {
        &self.allocated
    }
}

impl MemoryPool for FakePool {
    fn allocate(&mut self) -> Option<u64> {
        let frame = self.free.pop_first()?;
        self.allocated.insert(frame);
        Some(frame)
    }

    fn free(&mut self, hpa: u64) {
        assert!(
            self.allocated.remove(&hpa),
            "free of frame {hpa:#x} not allocated"
        );
        self.free.insert(hpa);
    }

    fn free_frames(&self) -> u64 {
        self.free.len() as u64
    }

    fn total_frames(&self) -> u64 {
        (self.free.len() + self.allocated.len()) as u64
    }
}

/// Host memory made of 4 KiB frames created on first touch. Frames never written read as
/// `0xAA` (stale data), so a test sees whether the code under test zeroed them.
#[derive(Clone, Debug, Default)]
pub struct FakeHostMemory {
    frames: HashMap<u64, Box<[u8; PAGE_BYTES]>>,
}

impl FakeHostMemory {
    /// Empty memory.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn locate(hpa: u64, len: usize) -> (u64, usize) {
        let offset = (hpa % PAGE_SIZE) as usize;
        assert!(
            offset + len <= PAGE_BYTES,
            "access {hpa:#x}+{len:#x} crosses a frame"
        );
        (hpa - offset as u64, offset)
    }

    /// Test inspection: `len` bytes at `hpa` (within one frame).
    #[must_use]
    pub fn peek(&self, hpa: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.read(hpa, &mut buf);
        buf
    }
}

impl HostPhysMemory for FakeHostMemory {
    fn read(&self, hpa: u64, buf: &mut [u8]) {
        let (frame, offset) = Self::locate(hpa, buf.len());
        match self.frames.get(&frame) {
            Some(bytes) => buf.copy_from_slice(&bytes[offset..offset + buf.len()]),
            None => buf.fill(0xAA),
        }
    }

    fn write(&mut self, hpa: u64, data: &[u8]) {
        let (frame, offset) = Self::locate(hpa, data.len());
        let bytes = self
            .frames
            .entry(frame)
            .or_insert_with(|| Box::new([0xAA; PAGE_BYTES]));
        bytes[offset..offset + data.len()].copy_from_slice(data);
    }
}

/// Second-level tables as maps from GPA to `(HPA, permissions)`, with an optional budget of
/// table trees.
#[derive(Clone, Debug, Default)]
pub struct FakeSecondLevel {
    trees: BTreeMap<u64, BTreeMap<u64, (u64, GpaPerms)>>,
    next_root: u64,
    remaining_trees: Option<u64>,
    destroyed: Vec<u64>,
}

impl FakeSecondLevel {
    /// Unlimited trees.
    #[must_use]
    pub fn new() -> Self {
        Self {
            next_root: 0x1_0000_0000,
            ..Self::default()
        }
    }

    /// At most `trees` trees can be created.
    #[must_use]
    pub fn with_budget(trees: u64) -> Self {
        Self {
            remaining_trees: Some(trees),
            ..Self::new()
        }
    }

    /// The mappings of the tree at `root` (`None` if it does not exist).
    #[must_use]
    pub fn tree(&self, root: u64) -> Option<&BTreeMap<u64, (u64, GpaPerms)>> {
        self.trees.get(&root)
    }

    /// Roots destroyed so far.
    #[must_use]
    pub fn destroyed(&self) -> &[u64] {
        &self.destroyed
    }
}

impl SecondLevel for FakeSecondLevel {
    fn create(&mut self) -> Result<u64, SecondLevelError> {
        if let Some(remaining) = &mut self.remaining_trees {
            *remaining = remaining
                .checked_sub(1)
                .ok_or(SecondLevelError::OutOfFrames)?;
        }
        let root = self.next_root;
        self.next_root += PAGE_SIZE;
        self.trees.insert(root, BTreeMap::new());
        Ok(root)
    }

    fn map(
        &mut self,
        root: u64,
        gpa: u64,
        hpa: u64,
        perms: GpaPerms,
    ) -> Result<Flush, SecondLevelError> {
        let tree = self.trees.get_mut(&root).expect("map in unknown tree");
        if tree.contains_key(&gpa) {
            return Err(SecondLevelError::AlreadyMapped(gpa));
        }
        tree.insert(gpa, (hpa, perms));
        Ok(Flush::NotNeeded)
    }

    fn unmap(&mut self, root: u64, gpa: u64) -> Result<Flush, SecondLevelError> {
        let tree = self.trees.get_mut(&root).expect("unmap in unknown tree");
        tree.remove(&gpa)
            .map(|_| Flush::Needed)
            .ok_or(SecondLevelError::NotMapped(gpa))
    }

    fn destroy(&mut self, root: u64) {
        let tree = self.trees.remove(&root).expect("destroy of unknown tree");
        assert!(tree.is_empty(), "destroy of a tree that still maps pages");
        self.destroyed.push(root);
    }
}

/// A host CPU: CPUID answers from a table (all ones for leaves not in it), VMMCALL as the
/// hypercall instruction, a TSC that reads as a fixed value.
#[derive(Clone, Debug, Default)]
pub struct FakePlatform {
    /// CPUID answers by (leaf, subleaf).
    pub cpuid: BTreeMap<(u32, u32), CpuidResult>,
    /// What RDTSC returns.
    pub tsc: u64,
}

impl Platform for FakePlatform {
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> CpuidResult {
        self.cpuid
            .get(&(leaf, subleaf))
            .copied()
            .unwrap_or(CpuidResult {
                eax: u32::MAX,
                ebx: u32::MAX,
                ecx: u32::MAX,
                edx: u32::MAX,
            })
    }

    fn hypercall_instruction(&self) -> [u8; 3] {
        [0x0F, 0x01, 0xD9]
    }

    fn read_tsc(&self) -> u64 {
        self.tsc
    }
}
