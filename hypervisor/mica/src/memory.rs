//! The hypervisor's own memory: the physical frame allocator built from the boot memory map,
//! the hypervisor's page tables, and the heap.
//!
//! Address space (one, shared by every hypervisor context): physical memory is identity
//! mapped (virtual = physical). RAM and low memory are read-write and never executable; the
//! image is mapped per section (text read+execute, rodata read-only, data read-write); the
//! page below every stack is left unmapped as a guard; page 0 is unmapped so null accesses
//! fault. All policy (W^X, what is mapped) is checked by the `paging` crate.

use boot_entry::{ImageLayout, StackLayout};
use frame_alloc::{FrameAllocator, LOW_MEMORY, MemoryRegions, PhysRange};
use paging::{FrameSource, HugePages, LongMode, MapFlags, PageTables, TableMemory};
use spin::Mutex;
use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

/// Largest number of ranges handled while building the maps.
const MAX_RANGES: usize = 160;
/// Size of the hypervisor heap.
pub const HEAP_SIZE: u64 = 8 << 20;
/// The boot trampoline identity-maps this much; everything touched before the switch to the
/// hypervisor's own tables (the allocator bitmap, new table frames) must lie below it.
const BOOT_MAPPED_LIMIT: u64 = 4 << 30;

#[global_allocator]
static HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

/// The frame allocator, once memory is initialised.
pub static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

/// The hypervisor's page-table root and format, once its tables are live.
static TABLES: Mutex<Option<(u64, LongMode)>> = Mutex::new(None);

/// Why memory could not be set up (printed on serial before a clean stop).
#[derive(Debug)]
pub enum MemoryError {
    /// The frame allocator could not be built from the memory map.
    Frames(frame_alloc::BuildError),
    /// The allocator bitmap would lie where the boot page tables do not reach.
    BitmapNotBootMapped(PhysRange),
    /// The CPU reports a physical address width the page-table format cannot use.
    PhysAddrBits(u8),
    /// Building the hypervisor's page tables failed.
    Map(paging::MapError, &'static str),
    /// Not enough contiguous memory for the heap.
    Heap(frame_alloc::FrameError),
    /// Too many memory-map ranges to process.
    TooManyRanges,
    /// Called before [`init`] succeeded.
    NotInitialised,
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Frames(e) => write!(f, "Frame allocator: {e}"),
            Self::BitmapNotBootMapped(r) => write!(
                f,
                "Frame bitmap at {:#x}..{:#x} lies above the first 4 GiB",
                r.start, r.end
            ),
            Self::PhysAddrBits(bits) => write!(f, "Unsupported physical address width {bits}"),
            Self::Map(e, what) => write!(f, "Mapping {what}: {e}"),
            Self::Heap(e) => write!(f, "Heap: {e}"),
            Self::TooManyRanges => write!(f, "Memory map has more than {MAX_RANGES} ranges"),
            Self::NotInitialised => write!(f, "Memory is not initialised yet"),
        }
    }
}

/// What [`init`] set up, for the boot log.
#[derive(Debug, Clone, Copy)]
pub struct MemorySummary {
    /// Frames managed by the allocator.
    pub total_frames: u64,
    /// Frames still free after the page tables and the heap took theirs.
    pub free_frames: u64,
    /// Physical address of the new PML4.
    pub page_table_root: u64,
    /// Heap location.
    pub heap: PhysRange,
}

/// Small fixed-capacity list of ranges (no heap exists yet).
struct Ranges {
    items: [PhysRange; MAX_RANGES],
    len: usize,
}

impl Ranges {
    fn new() -> Self {
        Self {
            items: [PhysRange { start: 0, end: 0 }; MAX_RANGES],
            len: 0,
        }
    }

    fn push(&mut self, range: PhysRange) -> Result<(), MemoryError> {
        let slot = self
            .items
            .get_mut(self.len)
            .ok_or(MemoryError::TooManyRanges)?;
        *slot = range;
        self.len += 1;
        Ok(())
    }

    fn as_slice(&self) -> &[PhysRange] {
        &self.items[..self.len]
    }
}

/// Page-table memory reached through the identity map.
pub struct IdentityTables;

impl TableMemory for IdentityTables {
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        let entry = (table as *const u64).wrapping_add(index);
        // SAFETY: `paging` passes only 4 KiB-aligned table frames it owns (the root or frames
        // from `TableFrames`, which come from the frame allocator and are identity mapped both
        // by the boot tables and by ours) and `index < 512`, so the entry is in bounds, aligned
        // and not aliased by any Rust reference.
        unsafe { entry.read_volatile() }
    }

    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        let entry = (table as *mut u64).wrapping_add(index);
        // SAFETY: as in `read_entry`; the table frames belong to the page tables alone.
        unsafe { entry.write_volatile(value) }
    }
}

/// Zeroed frames for new page tables, from the frame allocator.
struct TableFrames<'a, 'b>(&'a mut FrameAllocator<'b>);

impl FrameSource for TableFrames<'_, '_> {
    fn allocate_table(&mut self) -> Option<u64> {
        let frame = self.0.allocate()?;
        if frame >= BOOT_MAPPED_LIMIT {
            // Not reachable through the boot tables; leave it allocated (never used).
            return None;
        }
        // SAFETY: the frame was just allocated (owned by nobody else), is 4 KiB aligned and
        // identity mapped, so zeroing its 4096 bytes touches only memory we own.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
        Some(frame)
    }
}

fn range(start: u64, end: u64) -> PhysRange {
    PhysRange { start, end }
}

/// Builds the frame allocator, switches to the hypervisor's page tables and sets up the heap.
///
/// `usable` is the memory map's usable RAM, `unusable` every other memory-map entry (kept out
/// even where a firmware map overlaps it with usable RAM), `modules` the boot modules (kept out
/// of the allocator), `phys_addr_bits` MAXPHYADDR, `pages_1g` whether 1 GiB pages exist.
/// `allocator_limit`: when a root partition gets the rest of RAM, the one range the frame
/// allocator (and so every hypervisor allocation: tables, heap, pool) may draw from.
pub fn init(
    usable: &[PhysRange],
    unusable: &[PhysRange],
    modules: &[PhysRange],
    layout: &ImageLayout,
    phys_addr_bits: u8,
    pages_1g: bool,
    allocator_limit: Option<PhysRange>,
) -> Result<MemorySummary, MemoryError> {
    let image = range(layout.image.start, layout.image.end);
    let mut reserved = Ranges::new();
    reserved.push(LOW_MEMORY)?;
    reserved.push(image)?;
    for module in modules {
        reserved.push(module.align_outward())?;
    }
    for region in unusable {
        reserved.push(region.align_outward())?;
    }

    let mut limited = Ranges::new();
    for ram in usable {
        let clipped = match allocator_limit {
            Some(limit) => range(ram.start.max(limit.start), ram.end.min(limit.end)),
            None => *ram,
        };
        if clipped.start < clipped.end {
            limited.push(clipped)?;
        }
    }
    let mut regions =
        MemoryRegions::new(limited.as_slice(), reserved.as_slice()).map_err(MemoryError::Frames)?;
    let plan = regions.plan_bitmap().map_err(MemoryError::Frames)?;
    if plan.range.end > BOOT_MAPPED_LIMIT {
        return Err(MemoryError::BitmapNotBootMapped(plan.range));
    }
    regions.reserve(plan.range).map_err(MemoryError::Frames)?;
    // SAFETY: `plan.range` is frame-aligned usable RAM below 4 GiB (identity mapped by the
    // boot tables and, below, by ours), now reserved so the allocator never hands it out, and
    // large enough for `plan.words` words. Nothing else refers to it: the slice is the only
    // access for the rest of the hypervisor's life.
    let bitmap: &'static mut [u64] =
        unsafe { core::slice::from_raw_parts_mut(plan.range.start as *mut u64, plan.words) };
    let mut frames = FrameAllocator::new(&regions, bitmap).map_err(MemoryError::Frames)?;

    let format = LongMode::host(phys_addr_bits)
        .ok_or(MemoryError::PhysAddrBits(phys_addr_bits))?
        .with_1g_pages(pages_1g);
    let mut memory = IdentityTables;
    let root = {
        let mut source = TableFrames(&mut frames);
        let mut tables = PageTables::create(&mut memory, format, &mut source)
            .map_err(|e| MemoryError::Map(e, "page-table root"))?;
        map_hypervisor(&mut tables, &mut source, usable, layout)?;
        tables.root()
    };

    let frame = PhysFrame::from_start_address(PhysAddr::new(root))
        .map_err(|_| MemoryError::Map(paging::MapError::InvalidRoot(root), "page-table root"))?;
    // SAFETY: the new tables identity-map everything the hypervisor touches from here on: its
    // image (text executable, the rest not), its stacks (minus guard pages), all RAM and low
    // memory; the code executing this is in the image's text, mapped at the same address.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };

    let heap_frames = HEAP_SIZE / frame_alloc::FRAME_SIZE;
    let heap_start = frames
        .allocate_contiguous(heap_frames, frame_alloc::FRAME_SIZE)
        .map_err(MemoryError::Heap)?;
    // SAFETY: the range was just allocated for the heap alone, is identity mapped read-write,
    // and `init` runs once, so the heap is initialised exactly once.
    unsafe {
        HEAP.lock().init(heap_start as *mut u8, HEAP_SIZE as usize);
    }

    let summary = MemorySummary {
        total_frames: frames.total_frames(),
        free_frames: frames.free_frames(),
        page_table_root: root,
        heap: range(heap_start, heap_start + HEAP_SIZE),
    };
    *FRAMES.lock() = Some(frames);
    *TABLES.lock() = Some((root, format));
    Ok(summary)
}

/// Maps a device's register range (e.g. the local APIC) uncached, read-write, never executable.
pub fn map_mmio(start: u64, len: u64) -> Result<(), MemoryError> {
    let (root, format) = (*TABLES.lock()).ok_or(MemoryError::NotInitialised)?;
    let mut frames_guard = FRAMES.lock();
    let frames = frames_guard.as_mut().ok_or(MemoryError::NotInitialised)?;
    let mut memory = IdentityTables;
    let mut tables = PageTables::new(&mut memory, root, format)
        .map_err(|e| MemoryError::Map(e, "page-table root"))?;
    let region = range(start, start.saturating_add(len)).align_outward();
    if tables.translate(region.start).is_some() {
        // Already mapped (e.g. inside a RAM range of an unusual memory map).
        return Ok(());
    }
    map(
        &mut tables,
        &mut TableFrames(frames),
        region,
        MapFlags::WRITABLE | MapFlags::NO_CACHE | MapFlags::GLOBAL,
        HugePages::Forbidden,
        "device registers",
    )
}

fn map_hypervisor<M: TableMemory>(
    tables: &mut PageTables<'_, M, LongMode>,
    frames: &mut impl FrameSource,
    usable: &[PhysRange],
    layout: &ImageLayout,
) -> Result<(), MemoryError> {
    let data = MapFlags::WRITABLE | MapFlags::GLOBAL;
    // Low memory (BIOS data, firmware tables) except page 0.
    map(
        tables,
        frames,
        range(0x1000, LOW_MEMORY.end),
        data,
        HugePages::Forbidden,
        "low memory",
    )?;
    // RAM, around the image.
    let image = range(layout.image.start, layout.image.end);
    for ram in usable {
        let ram = ram.align_outward();
        let ram = range(ram.start.max(LOW_MEMORY.end), ram.end);
        if ram.start >= ram.end {
            continue;
        }
        if ram.overlaps(&image) {
            map(
                tables,
                frames,
                range(ram.start, image.start.max(ram.start)),
                data,
                HugePages::Allowed,
                "RAM",
            )?;
            map(
                tables,
                frames,
                range(image.end.min(ram.end), ram.end),
                data,
                HugePages::Allowed,
                "RAM",
            )?;
        } else {
            map(tables, frames, ram, data, HugePages::Allowed, "RAM")?;
        }
    }
    // The image, per section.
    let exec = MapFlags::EXECUTABLE | MapFlags::GLOBAL;
    map(
        tables,
        frames,
        range(layout.text.start, layout.text.end),
        exec,
        HugePages::Forbidden,
        "image text",
    )?;
    map(
        tables,
        frames,
        range(layout.rodata.start, layout.rodata.end),
        MapFlags::GLOBAL,
        HugePages::Forbidden,
        "image rodata",
    )?;
    map(
        tables,
        frames,
        range(layout.data.start, layout.data.end),
        data,
        HugePages::Forbidden,
        "image data",
    )?;
    for stack in layout.stacks() {
        map_stack(tables, frames, stack)?;
    }
    Ok(())
}

fn map_stack<M: TableMemory>(
    tables: &mut PageTables<'_, M, LongMode>,
    frames: &mut impl FrameSource,
    stack: &StackLayout,
) -> Result<(), MemoryError> {
    // The guard page (stack.guard) stays unmapped.
    map(
        tables,
        frames,
        range(stack.stack.start, stack.stack.end),
        MapFlags::WRITABLE | MapFlags::GLOBAL,
        HugePages::Forbidden,
        "stack",
    )
}

fn map<M: TableMemory>(
    tables: &mut PageTables<'_, M, LongMode>,
    frames: &mut impl FrameSource,
    r: PhysRange,
    flags: MapFlags,
    huge: HugePages,
    what: &'static str,
) -> Result<(), MemoryError> {
    if r.start >= r.end {
        return Ok(());
    }
    tables
        .map_range(r.start, r.start, r.end - r.start, flags, huge, frames)
        .map(|_| ())
        .map_err(|e| MemoryError::Map(e, what))
}

/// Whether `addr` lies in one of the image's stack guard pages (for the fault dump).
pub fn guard_page_hit(layout: &ImageLayout, addr: u64) -> Option<&'static str> {
    let names = [
        "boot stack",
        "double-fault stack",
        "NMI stack",
        "machine-check stack",
        "exception stack",
    ];
    layout
        .stacks()
        .iter()
        .zip(names)
        .find(|(stack, _)| stack.guard.contains(&addr))
        .map(|(_, name)| name)
}
