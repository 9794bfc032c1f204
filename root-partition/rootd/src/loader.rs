//! Building a child partition through hypercalls, as the hypervisor's own boot-time launcher
//! (`mica::vmm::Runner::launch`) does it directly: create, initialize, map pool pages, load
//! the image with `guest_loader`, create VP 0, set its registers, leave it ready to start.
//!
//! The guest loader reads back what it wrote (page-table entries), but the root cannot read
//! a child's RAM, so the image is first built in a [`ShadowRam`] in rootd's memory and then
//! copied with MicaWritePartitionMemory. Only pages holding a non-zero byte are copied:
//! the hypervisor zeroes every pool page before mapping it (partition crate invariant), and
//! the partition is fresh.

use std::collections::BTreeMap;

use guest_loader::{GuestRam, InitialState, LoadError, LoadParams, RamError};
use hypercall::{MapGpaFlags, PAGE_SIZE, PartitionId, RegisterValue};
use partition::{SegmentRegister, TableRegister, names};

use crate::hv::{HvCallError, Hypervisor};

const PAGE: usize = PAGE_SIZE as usize;

/// RFLAGS.IF: set at start, as the hypervisor's launcher does (guests get no virtual
/// interrupts, and Bochs gates physical ones on the guest IF).
const RFLAGS_IF: u64 = 1 << 9;

/// A child's RAM image under construction: pages written so far; the rest reads as zero.
#[derive(Clone, Debug)]
pub struct ShadowRam {
    size: u64,
    pages: BTreeMap<u64, Box<[u8; PAGE]>>,
}

impl ShadowRam {
    /// `size` bytes of zeroed RAM.
    #[must_use]
    pub const fn new(size: u64) -> Self {
        Self {
            size,
            pages: BTreeMap::new(),
        }
    }

    fn check(&self, gpa: u64, len: u64) -> Result<(), RamError> {
        match gpa.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(RamError { gpa, len }),
        }
    }

    /// Runs `f(page, offset_in_page, range_in_data)` for each page piece of `[gpa, gpa+len)`
    /// (already checked to lie in RAM).
    fn pieces(gpa: u64, len: usize, mut f: impl FnMut(u64, usize, core::ops::Range<usize>)) {
        let mut done = 0;
        while done < len {
            let at = gpa + done as u64;
            let offset = (at % PAGE_SIZE) as usize;
            let n = (PAGE - offset).min(len - done);
            f(at / PAGE_SIZE, offset, done..done + n);
            done += n;
        }
    }

    /// Runs of consecutive pages holding any non-zero byte: `(first GPA, bytes)`.
    #[must_use]
    pub fn nonzero_runs(&self) -> Vec<(u64, Vec<u8>)> {
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut next_page = None;
        for (&page, bytes) in &self.pages {
            if bytes.iter().all(|&b| b == 0) {
                continue;
            }
            match runs.last_mut() {
                Some((_, run)) if next_page == Some(page) => run.extend_from_slice(&bytes[..]),
                _ => runs.push((page * PAGE_SIZE, bytes.to_vec())),
            }
            next_page = page.checked_add(1);
        }
        runs
    }
}

impl GuestRam for ShadowRam {
    fn ram_size(&self) -> u64 {
        self.size
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        self.check(gpa, data.len() as u64)?;
        Self::pieces(gpa, data.len(), |page, offset, range| {
            let bytes = self
                .pages
                .entry(page)
                .or_insert_with(|| Box::new([0; PAGE]));
            bytes[offset..offset + range.len()].copy_from_slice(&data[range]);
        });
        Ok(())
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        self.check(gpa, buf.len() as u64)?;
        Self::pieces(gpa, buf.len(), |page, offset, range| {
            let len = range.len();
            let dest = &mut buf[range];
            match self.pages.get(&page) {
                Some(bytes) => dest.copy_from_slice(&bytes[offset..offset + len]),
                None => dest.fill(0),
            }
        });
        Ok(())
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), RamError> {
        self.check(gpa, len)?;
        let len = usize::try_from(len).map_err(|_| RamError { gpa, len })?;
        Self::pieces(gpa, len, |page, offset, range| {
            if let Some(bytes) = self.pages.get_mut(&page) {
                bytes[offset..offset + range.len()].fill(0);
            }
        });
        Ok(())
    }
}

/// Why a partition could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A hypercall failed.
    #[error(transparent)]
    Hypercall(#[from] HvCallError),
    /// The guest loader refused the image.
    #[error("Cannot load the guest image: {0}")]
    Load(#[from] LoadError),
}

/// The VP 0 registers for `state`, exactly as the hypervisor's launcher sets them
/// (`apply_initial_state`): every GPR zero except RSP and RDI, RFLAGS with IF, flat 64-bit
/// code and data segments, a busy 64-bit TSS and an LDT that are never loaded, the loader's
/// GDT, an empty IDT.
#[must_use]
pub fn initial_registers(state: &InitialState) -> Vec<(u32, RegisterValue)> {
    let value = RegisterValue::from_u64;
    let mut regs: Vec<(u32, RegisterValue)> = (0..16)
        .map(|i| (names::RAX + i, RegisterValue::default()))
        .collect();
    // GPR encoding order: RAX, RCX, RDX, RBX, RSP (4), RBP, RSI, RDI (7), R8..R15.
    regs[4].1 = value(state.rsp);
    regs[7].1 = value(state.rdi);
    let code = SegmentRegister {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector: state.code_selector,
        attributes: 0xA09B,
    };
    let data = SegmentRegister {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector: state.data_selector,
        attributes: 0xC093,
    };
    let tr = SegmentRegister {
        base: 0,
        limit: 0xFFFF,
        selector: 0,
        attributes: 0x008B,
    };
    let ldtr = SegmentRegister {
        base: 0,
        limit: 0,
        selector: 0,
        attributes: 0x0082,
    };
    regs.extend([
        (names::RIP, value(state.rip)),
        (names::RFLAGS, value(state.rflags | RFLAGS_IF)),
        (names::CR0, value(state.cr0)),
        (names::CR3, value(state.cr3)),
        (names::CR4, value(state.cr4)),
        (names::EFER, value(state.efer)),
        (names::CS, code.to_value()),
        (names::DS, data.to_value()),
        (names::ES, data.to_value()),
        (names::FS, data.to_value()),
        (names::GS, data.to_value()),
        (names::SS, data.to_value()),
        (names::TR, tr.to_value()),
        (names::LDTR, ldtr.to_value()),
        (
            names::GDTR,
            TableRegister {
                base: state.gdtr_base,
                limit: state.gdtr_limit,
            }
            .to_value(),
        ),
        (names::IDTR, TableRegister { base: 0, limit: 0 }.to_value()),
    ]);
    regs
}

/// Creates a partition with `memory` bytes of RAM holding `image` (started with `args`),
/// and VP 0 ready at the image's entry. On failure after creation the partition is deleted
/// again (best effort).
///
/// # Errors
/// The failing hypercall, or the loader's refusal.
pub fn launch<H: Hypervisor + ?Sized>(
    hv: &mut H,
    image: &[u8],
    memory: u64,
    args: &str,
) -> Result<PartitionId, LaunchError> {
    let id = hv.create_partition()?;
    match build(hv, id, image, memory, args) {
        Ok(()) => Ok(id),
        Err(error) => {
            // Best effort: the original error is what the user needs to see.
            let _ = hv.finalize(id);
            let _ = hv.delete(id);
            Err(error)
        }
    }
}

fn build<H: Hypervisor + ?Sized>(
    hv: &mut H,
    id: PartitionId,
    image: &[u8],
    memory: u64,
    args: &str,
) -> Result<(), LaunchError> {
    hv.initialize_partition(id)?;
    let mut ram = ShadowRam::new(memory);
    let state = guest_loader::load(
        image,
        &LoadParams {
            partition_id: id.0,
            vp_index: 0,
            args,
        },
        &mut ram,
    )?;
    let flags = MapGpaFlags::READABLE | MapGpaFlags::WRITABLE | MapGpaFlags::KERNEL_EXECUTABLE;
    hv.map_pool_pages(id, 0, memory / PAGE_SIZE, flags)?;
    for (gpa, bytes) in ram.nonzero_runs() {
        hv.write_memory(id, gpa, &bytes)?;
    }
    hv.create_vp(id, 0)?;
    hv.set_vp_registers(id, 0, &initial_registers(&state))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_ram_reads_back_and_refuses_outside() {
        let mut ram = ShadowRam::new(3 * PAGE_SIZE);
        ram.write(PAGE_SIZE - 2, &[1, 2, 3, 4]).unwrap();
        let mut buf = [9u8; 6];
        ram.read(PAGE_SIZE - 3, &mut buf).unwrap();
        assert_eq!(buf, [0, 1, 2, 3, 4, 0]);
        ram.zero(PAGE_SIZE - 1, 2).unwrap();
        ram.read(PAGE_SIZE - 3, &mut buf).unwrap();
        assert_eq!(buf, [0, 1, 0, 0, 4, 0]);
        assert_eq!(
            ram.write(3 * PAGE_SIZE - 1, &[1, 2]),
            Err(RamError {
                gpa: 3 * PAGE_SIZE - 1,
                len: 2
            })
        );
        assert!(ram.read(u64::MAX, &mut buf).is_err());
        assert!(ram.zero(1, u64::MAX).is_err());
    }

    #[test]
    fn only_nonzero_pages_are_copied_in_runs() {
        let mut ram = ShadowRam::new(8 * PAGE_SIZE);
        ram.write(0, &[1]).unwrap();
        ram.write(PAGE_SIZE, &[2]).unwrap();
        // Written, then zeroed: nothing to copy.
        ram.write(3 * PAGE_SIZE, &[3]).unwrap();
        ram.zero(3 * PAGE_SIZE, PAGE_SIZE).unwrap();
        ram.write(5 * PAGE_SIZE + 7, &[5]).unwrap();
        let runs = ram.nonzero_runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].0, 0);
        assert_eq!(runs[0].1.len(), 2 * PAGE);
        assert_eq!((runs[0].1[0], runs[0].1[PAGE]), (1, 2));
        assert_eq!(runs[1].0, 5 * PAGE_SIZE);
        assert_eq!(runs[1].1[7], 5);
    }
}
