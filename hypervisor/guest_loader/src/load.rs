//! Writing a checked image, its page tables, GDT and start-info page into guest RAM.

use core::cell::Cell;

use paging::{
    FrameSource, HugePages, LongMode, MAX_PHYS_ADDR_BITS, MapError, MapFlags, PageTables,
    TableMemory, WxPolicy,
};
use zerocopy::{FromZeros, IntoBytes};

use crate::elf::{ElfError, ElfImage};
use crate::layout::{
    CODE_SELECTOR, DATA_SELECTOR, GDT, GDT_GPA, Layout, LayoutError, PAGE_SIZE, Region,
    START_INFO_GPA,
};
use crate::start_info::{ARGS_MAX, START_INFO_MAGIC, START_INFO_VERSION, StartInfo};

/// A guest RAM range the [`GuestRam`] implementation could not access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Guest RAM range {gpa:#x}+{len:#x} is not accessible")]
pub struct RamError {
    /// Start of the range.
    pub gpa: u64,
    /// Its length.
    pub len: u64,
}

/// The child's RAM, `[0, ram_size())` in guest-physical addresses.
///
/// The loader only passes ranges inside `[0, ram_size())`; implementations must still
/// refuse others (with [`RamError`]) rather than panic.
pub trait GuestRam {
    /// Bytes of RAM.
    fn ram_size(&self) -> u64;

    /// Copies `data` to RAM at `gpa`.
    ///
    /// # Errors
    /// The range is not RAM.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError>;

    /// Copies RAM at `gpa` into `buf` (the page-table builder reads back entries).
    ///
    /// # Errors
    /// The range is not RAM.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError>;

    /// Sets `len` bytes at `gpa` to zero.
    ///
    /// # Errors
    /// The range is not RAM.
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), RamError>;
}

impl<R: GuestRam + ?Sized> GuestRam for &mut R {
    fn ram_size(&self) -> u64 {
        (**self).ram_size()
    }

    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), RamError> {
        (**self).write(gpa, data)
    }

    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), RamError> {
        (**self).read(gpa, buf)
    }

    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), RamError> {
        (**self).zero(gpa, len)
    }
}

/// Who the guest is, and its argument string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadParams<'a> {
    /// The partition's ID (reported to the guest).
    pub partition_id: u64,
    /// The index of the VP that starts with this state.
    pub vp_index: u32,
    /// The module's argument string, at most [`ARGS_MAX`] bytes.
    pub args: &'a str,
}

/// Register state of the boot VP: 64-bit long mode, CPL 0, interrupts off.
///
/// Segments: CS = [`CODE_SELECTOR`] (64-bit code, base 0, DPL 0); DS, ES, FS, GS, SS =
/// [`DATA_SELECTOR`] (flat data); hidden parts as the GDT at `gdtr_base` describes them
/// (SVM attribute words 0x0A9B for CS and 0x0C93 for data). IDTR base 0, limit 0. TR and
/// LDTR unusable (selector 0). Every general-purpose register not listed is zero. A backend
/// adds what its hardware needs (EFER.SVME in the VMCB guest EFER on AMD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialState {
    /// The ELF entry point.
    pub rip: u64,
    /// Top of the boot stack (16-byte aligned).
    pub rsp: u64,
    /// GPA of the start-info page.
    pub rdi: u64,
    /// RFLAGS: only the reserved bit 1 (IF clear).
    pub rflags: u64,
    /// GPA of the PML4.
    pub cr3: u64,
    /// CR0: PE, MP, ET, NE, WP, PG.
    pub cr0: u64,
    /// CR4: PAE, OSFXSR, OSXMMEXCPT.
    pub cr4: u64,
    /// EFER: LME, LMA.
    pub efer: u64,
    /// GPA of the GDT.
    pub gdtr_base: u64,
    /// GDT limit (size - 1).
    pub gdtr_limit: u16,
    /// CS selector.
    pub code_selector: u16,
    /// DS/ES/FS/GS/SS selector.
    pub data_selector: u16,
}

impl InitialState {
    /// CR0 at entry: PE | MP | ET | NE | WP | PG.
    pub const CR0: u64 = (1 << 0) | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 16) | (1 << 31);
    /// CR4 at entry: PAE | OSFXSR | OSXMMEXCPT.
    pub const CR4: u64 = (1 << 5) | (1 << 9) | (1 << 10);
    /// EFER at entry: LME | LMA.
    pub const EFER: u64 = (1 << 8) | (1 << 10);
    /// RFLAGS at entry: the always-one bit 1, IF clear.
    pub const RFLAGS: u64 = 1 << 1;
}

/// Why an image was not loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The ELF is malformed.
    #[error("Bad guest image")]
    Elf(#[from] ElfError),
    /// The RAM size is unusable.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The argument string is longer than [`ARGS_MAX`].
    #[error("Argument string of {0} bytes is too long")]
    ArgsTooLong(usize),
    /// A segment reaches beyond the end of RAM.
    #[error("Segment {index} lies beyond the end of RAM")]
    SegmentBeyondRam {
        /// Its program header.
        index: u16,
    },
    /// A segment overlaps memory the loader reserves.
    #[error("Segment {index} overlaps the reserved {region:?} region")]
    SegmentOverlapsReserved {
        /// Its program header.
        index: u16,
        /// The region.
        region: Region,
    },
    /// The [`GuestRam`] failed an access.
    #[error("Guest RAM access failed")]
    Ram(#[from] RamError),
    /// Building the page tables failed.
    #[error("Building the guest page tables failed")]
    PageTables(#[from] MapError),
}

/// Loads `elf` into `ram` for the guest described by `params`, following the guest boot
/// convention (crate documentation), and returns the boot VP's state.
///
/// Everything is checked before the first write; a [`LoadError::Ram`] or
/// [`LoadError::PageTables`] (only possible if `ram` misbehaves) can leave RAM partly
/// written.
///
/// # Errors
/// Every [`LoadError`].
pub fn load<R: GuestRam + ?Sized>(
    elf: &[u8],
    params: &LoadParams<'_>,
    ram: &mut R,
) -> Result<InitialState, LoadError> {
    let layout = Layout::new(ram.ram_size())?;
    let image = ElfImage::parse(elf)?;
    if params.args.len() > ARGS_MAX {
        return Err(LoadError::ArgsTooLong(params.args.len()));
    }
    for segment in image.segments() {
        if segment.end() > layout.ram_size() {
            return Err(LoadError::SegmentBeyondRam {
                index: segment.index,
            });
        }
        if let Some(region) = layout.overlapped_region(segment.gpa, segment.end()) {
            return Err(LoadError::SegmentOverlapsReserved {
                index: segment.index,
                region,
            });
        }
    }

    for segment in image.segments() {
        let bytes = image.file_bytes(segment).ok_or(RamError {
            gpa: segment.gpa,
            len: segment.file_size,
        })?;
        ram.write(segment.gpa, bytes)?;
        // file_size <= mem_size (checked by the parser).
        ram.zero(
            segment.gpa + segment.file_size,
            segment.mem_size - segment.file_size,
        )?;
    }

    let stack = layout.stack();
    // The image ends below the stack, itself below the tables: rounding up stays in RAM.
    let image_end = image.end().next_multiple_of(PAGE_SIZE);
    let mut info = StartInfo::new_zeroed();
    info.magic = START_INFO_MAGIC;
    info.version = START_INFO_VERSION;
    info.size = size_of::<StartInfo>() as u32;
    info.ram_size = layout.ram_size();
    info.partition_id = params.partition_id;
    info.vp_index = params.vp_index;
    info.args_len = params.args.len() as u32;
    info.image_start = image.start();
    info.image_end = image_end;
    info.free_end = stack.start;
    info.stack_top = layout.stack_top();
    info.page_tables = layout.page_tables().start;
    if let Some(dest) = info.args.get_mut(..params.args.len()) {
        dest.copy_from_slice(params.args.as_bytes());
    }
    ram.zero(START_INFO_GPA, PAGE_SIZE)?;
    ram.write(START_INFO_GPA, info.as_bytes())?;

    ram.zero(GDT_GPA, PAGE_SIZE)?;
    ram.write(GDT_GPA, GDT.as_bytes())?;
    ram.zero(stack.start, stack.end - stack.start)?;

    let cr3 = build_page_tables(&layout, ram)?;

    Ok(InitialState {
        rip: image.entry(),
        rsp: layout.stack_top(),
        rdi: START_INFO_GPA,
        rflags: InitialState::RFLAGS,
        cr3,
        cr0: InitialState::CR0,
        cr4: InitialState::CR4,
        efer: InitialState::EFER,
        gdtr_base: GDT_GPA,
        gdtr_limit: (size_of_val(&GDT) - 1) as u16,
        code_selector: CODE_SELECTOR,
        data_selector: DATA_SELECTOR,
    })
}

/// Identity-maps `[0, ram_size)` with writable, executable 2 MiB pages in tables built in
/// the table area; returns the PML4's GPA.
fn build_page_tables<R: GuestRam + ?Sized>(layout: &Layout, ram: &mut R) -> Result<u64, LoadError> {
    let area = layout.page_tables();
    ram.zero(area.start, area.end - area.start)?;
    let mut memory = RamTables {
        ram,
        error: Cell::new(None),
    };
    let mut frames = TableFrames {
        next: area.start,
        end: area.end,
    };
    // Only the address mask depends on the width, and every GPA here is below 64 GiB.
    let format = LongMode::host(MAX_PHYS_ADDR_BITS).ok_or(MapError::InvalidRoot(0))?;
    let built = PageTables::create(&mut memory, format, &mut frames).and_then(|tables| {
        let mut tables = tables.with_wx_policy(WxPolicy::Allow);
        // Fresh tables: only non-present entries are filled, nothing to flush.
        let _flush = tables.map_range(
            0,
            0,
            layout.ram_size(),
            MapFlags::WRITABLE | MapFlags::EXECUTABLE,
            HugePages::Allowed,
            &mut frames,
        )?;
        Ok(tables.root())
    });
    // A failed RAM access explains whatever the builder did next (it read zeros).
    if let Some(error) = memory.error.get() {
        return Err(LoadError::Ram(error));
    }
    Ok(built?)
}

/// [`TableMemory`] over [`GuestRam`]; the first access error is kept (the trait cannot
/// report it) and turned into [`LoadError::Ram`] afterwards.
pub(crate) struct RamTables<'r, R: GuestRam + ?Sized> {
    pub(crate) ram: &'r mut R,
    pub(crate) error: Cell<Option<RamError>>,
}

impl<R: GuestRam + ?Sized> RamTables<'_, R> {
    fn record(&self, error: RamError) {
        if self.error.get().is_none() {
            self.error.set(Some(error));
        }
    }
}

/// GPA of entry `index` of the table at `table` (the paging crate passes index < 512).
fn entry_gpa(table: u64, index: usize) -> Option<u64> {
    table.checked_add(u64::try_from(index).ok()?.checked_mul(8)?)
}

impl<R: GuestRam + ?Sized> TableMemory for RamTables<'_, R> {
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        let mut bytes = [0u8; 8];
        let result = entry_gpa(table, index)
            .ok_or(RamError { gpa: table, len: 8 })
            .and_then(|gpa| self.ram.read(gpa, &mut bytes));
        match result {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(error) => {
                self.record(error);
                0
            }
        }
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        let result = entry_gpa(table, index)
            .ok_or(RamError { gpa: table, len: 8 })
            .and_then(|gpa| self.ram.write(gpa, &value.to_le_bytes()));
        if let Err(error) = result {
            self.record(error);
        }
    }
}

/// Bump allocator over the (zeroed) table area.
struct TableFrames {
    next: u64,
    end: u64,
}

impl FrameSource for TableFrames {
    fn allocate_table(&mut self) -> Option<u64> {
        let frame = self.next;
        let after = frame.checked_add(PAGE_SIZE)?;
        if after > self.end {
            return None;
        }
        self.next = after;
        Some(frame)
    }
}
