//! The ELF64 subset a test guest image may use: a little-endian x86-64 static executable
//! (`ET_EXEC`) whose `PT_LOAD` segments are loaded at their physical address, which must
//! equal their virtual address (the guest runs identity-mapped).
//!
//! [`ElfImage::parse`] checks everything that depends on the file alone; the checks against
//! a RAM size happen in [`crate::load`]. Field layouts: System V gABI, "ELF Header" and
//! "Program Header".

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Most program headers an image may have (`PT_LOAD` and others together).
pub const MAX_PROGRAM_HEADERS: u16 = 64;
/// Most non-empty `PT_LOAD` segments an image may have.
pub const MAX_LOAD_SEGMENTS: usize = 16;

const ELF_MAGIC: [u8; 4] = [0x7F, b'E', b'L', b'F'];
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// `Elf64_Ehdr`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub(crate) struct FileHeader {
    pub ident: [u8; 16],
    pub kind: u16,
    pub machine: u16,
    pub version: u32,
    pub entry: u64,
    pub phoff: u64,
    pub shoff: u64,
    pub flags: u32,
    pub ehsize: u16,
    pub phentsize: u16,
    pub phnum: u16,
    pub shentsize: u16,
    pub shnum: u16,
    pub shstrndx: u16,
}

/// `Elf64_Phdr`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub(crate) struct ProgramHeader {
    pub kind: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

pub(crate) const FILE_HEADER_SIZE: usize = 64;
pub(crate) const PROGRAM_HEADER_SIZE: usize = 56;
const _: () = assert!(size_of::<FileHeader>() == FILE_HEADER_SIZE);
const _: () = assert!(size_of::<ProgramHeader>() == PROGRAM_HEADER_SIZE);
const _: () = assert!(core::mem::offset_of!(FileHeader, entry) == 24);
const _: () = assert!(core::mem::offset_of!(FileHeader, phentsize) == 54);
const _: () = assert!(core::mem::offset_of!(ProgramHeader, paddr) == 24);
// ELF fields are little-endian here (ELFDATA2LSB), read as native integers.
const _: () = assert!(cfg!(target_endian = "little"));

/// What is wrong with an image. `index` fields name a program header (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Shorter than an ELF header.
    #[error("Image is shorter than an ELF header")]
    Truncated,
    /// No ELF magic.
    #[error("Not an ELF image")]
    BadMagic,
    /// Not ELFCLASS64.
    #[error("ELF class {0} is not 64-bit")]
    BadClass(u8),
    /// Not little-endian.
    #[error("ELF data encoding {0} is not little-endian")]
    BadEndianness(u8),
    /// Unknown ELF version (in the ident or the header).
    #[error("Unsupported ELF version")]
    BadVersion,
    /// Not `ET_EXEC` (relocatable, shared/PIE, core files are refused).
    #[error("ELF type {0} is not a static executable")]
    NotExecutable(u16),
    /// Not `EM_X86_64`.
    #[error("ELF machine {0} is not x86-64")]
    BadMachine(u16),
    /// `e_phentsize` is not 56.
    #[error("Program header size {0} is not 56")]
    BadProgramHeaderSize(u16),
    /// More than [`MAX_PROGRAM_HEADERS`] program headers.
    #[error("Too many program headers ({0})")]
    TooManyProgramHeaders(u16),
    /// The program header table does not lie inside the file.
    #[error("Program headers lie outside the image")]
    ProgramHeadersOutOfFile,
    /// A `PT_INTERP` or `PT_DYNAMIC` header: the image is not static.
    #[error("Program header {index} asks for dynamic linking")]
    DynamicImage {
        /// The header.
        index: u16,
    },
    /// `p_filesz > p_memsz`.
    #[error("Segment {index} has more file bytes than memory bytes")]
    FileSizeExceedsMemSize {
        /// The header.
        index: u16,
    },
    /// `p_offset + p_filesz` lies beyond the file (or overflows).
    #[error("Segment {index} lies outside the image")]
    SegmentOutOfFile {
        /// The header.
        index: u16,
    },
    /// `p_paddr + p_memsz` overflows.
    #[error("Segment {index} wraps around the address space")]
    AddressOverflow {
        /// The header.
        index: u16,
    },
    /// `p_vaddr != p_paddr` (the guest runs identity-mapped).
    #[error("Segment {index} has different virtual and physical addresses")]
    VirtualPhysicalMismatch {
        /// The header.
        index: u16,
    },
    /// More than [`MAX_LOAD_SEGMENTS`] non-empty `PT_LOAD` segments.
    #[error("Too many loadable segments")]
    TooManySegments,
    /// No non-empty `PT_LOAD` segment.
    #[error("No loadable segment")]
    NoLoadableSegments,
    /// Two segments share memory.
    #[error("Segments {first} and {second} overlap")]
    SegmentsOverlap {
        /// The earlier header.
        first: u16,
        /// The later header.
        second: u16,
    },
    /// `e_entry` is not inside the file-backed part of an executable segment.
    #[error("Entry point {0:#x} is outside the executable segments")]
    EntryOutsideExecutableSegment(u64),
}

/// Permissions of a segment (`p_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentFlags {
    /// `PF_R`.
    pub read: bool,
    /// `PF_W`.
    pub write: bool,
    /// `PF_X`.
    pub execute: bool,
}

/// A non-empty `PT_LOAD` segment, checked against the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    /// Index of its program header.
    pub index: u16,
    /// Guest-physical (and virtual) address of its first byte.
    pub gpa: u64,
    /// Bytes in memory (the part after `file_size` is zero-filled).
    pub mem_size: u64,
    /// Offset of its bytes in the file.
    pub file_offset: u64,
    /// Bytes taken from the file.
    pub file_size: u64,
    /// Permissions.
    pub flags: SegmentFlags,
}

impl Segment {
    /// First byte after the segment in memory (cannot overflow: checked when parsed).
    #[must_use]
    pub const fn end(&self) -> u64 {
        self.gpa + self.mem_size
    }
}

/// A checked ELF image: header fields and loadable segments, borrowing the file bytes.
#[derive(Debug, Clone)]
pub struct ElfImage<'a> {
    bytes: &'a [u8],
    entry: u64,
    segments: [Segment; MAX_LOAD_SEGMENTS],
    count: usize,
}

impl<'a> ElfImage<'a> {
    /// Checks `bytes` as a test-guest image. Never panics; the first problem found is
    /// returned.
    ///
    /// # Errors
    /// Every [`ElfError`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        let header = FileHeader::read_from_prefix(bytes)
            .map_err(|_| ElfError::Truncated)?
            .0;
        check_file_header(&header)?;
        if header.phentsize as usize != PROGRAM_HEADER_SIZE {
            return Err(ElfError::BadProgramHeaderSize(header.phentsize));
        }
        if header.phnum > MAX_PROGRAM_HEADERS {
            return Err(ElfError::TooManyProgramHeaders(header.phnum));
        }
        let table_len = u64::from(header.phnum) * PROGRAM_HEADER_SIZE as u64;
        let table =
            slice_at(bytes, header.phoff, table_len).ok_or(ElfError::ProgramHeadersOutOfFile)?;

        let mut image = Self {
            bytes,
            entry: header.entry,
            segments: [Segment::default(); MAX_LOAD_SEGMENTS],
            count: 0,
        };
        for (index, raw) in (0u16..).zip(table.chunks_exact(PROGRAM_HEADER_SIZE)) {
            let ph = ProgramHeader::read_from_bytes(raw).map_err(|_| ElfError::Truncated)?;
            if let Some(segment) = check_program_header(index, &ph, bytes.len())? {
                image.push(segment)?;
            }
        }
        if image.count == 0 {
            return Err(ElfError::NoLoadableSegments);
        }
        image.check_entry()?;
        Ok(image)
    }

    /// The entry point (`e_entry`).
    #[must_use]
    pub const fn entry(&self) -> u64 {
        self.entry
    }

    /// The non-empty loadable segments, in program-header order.
    #[must_use]
    pub fn segments(&self) -> &[Segment] {
        self.segments.get(..self.count).unwrap_or(&[])
    }

    /// The file bytes of a segment of this image.
    #[must_use]
    pub fn file_bytes(&self, segment: &Segment) -> Option<&'a [u8]> {
        slice_at(self.bytes, segment.file_offset, segment.file_size)
    }

    /// Lowest GPA of any segment.
    #[must_use]
    pub fn start(&self) -> u64 {
        self.segments().iter().map(|s| s.gpa).min().unwrap_or(0)
    }

    /// First GPA after every segment.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.segments().iter().map(Segment::end).max().unwrap_or(0)
    }

    fn push(&mut self, segment: Segment) -> Result<(), ElfError> {
        if let Some(other) = self
            .segments()
            .iter()
            .find(|s| segment.gpa < s.end() && s.gpa < segment.end())
        {
            return Err(ElfError::SegmentsOverlap {
                first: other.index,
                second: segment.index,
            });
        }
        let slot = self
            .segments
            .get_mut(self.count)
            .ok_or(ElfError::TooManySegments)?;
        *slot = segment;
        self.count += 1;
        Ok(())
    }

    fn check_entry(&self) -> Result<(), ElfError> {
        let entry = self.entry;
        let inside = self.segments().iter().any(|s| {
            // gpa + file_size <= gpa + mem_size, which does not overflow.
            s.flags.execute && s.gpa <= entry && entry < s.gpa + s.file_size
        });
        if inside {
            Ok(())
        } else {
            Err(ElfError::EntryOutsideExecutableSegment(entry))
        }
    }
}

fn check_file_header(header: &FileHeader) -> Result<(), ElfError> {
    let ident = &header.ident;
    if ident[..4] != ELF_MAGIC {
        return Err(ElfError::BadMagic);
    }
    if ident[4] != ELFCLASS64 {
        return Err(ElfError::BadClass(ident[4]));
    }
    if ident[5] != ELFDATA2LSB {
        return Err(ElfError::BadEndianness(ident[5]));
    }
    if ident[6] != EV_CURRENT || header.version != u32::from(EV_CURRENT) {
        return Err(ElfError::BadVersion);
    }
    if header.kind != ET_EXEC {
        return Err(ElfError::NotExecutable(header.kind));
    }
    if header.machine != EM_X86_64 {
        return Err(ElfError::BadMachine(header.machine));
    }
    Ok(())
}

/// A `PT_LOAD` with memory becomes a [`Segment`]; other types are ignored, except the
/// dynamic-linking ones, which are refused.
fn check_program_header(
    index: u16,
    ph: &ProgramHeader,
    file_len: usize,
) -> Result<Option<Segment>, ElfError> {
    match ph.kind {
        PT_LOAD => {}
        PT_DYNAMIC | PT_INTERP => return Err(ElfError::DynamicImage { index }),
        _ => return Ok(None),
    }
    if ph.filesz > ph.memsz {
        return Err(ElfError::FileSizeExceedsMemSize { index });
    }
    let in_file = ph
        .offset
        .checked_add(ph.filesz)
        .is_some_and(|end| end <= file_len as u64);
    if !in_file {
        return Err(ElfError::SegmentOutOfFile { index });
    }
    if ph.paddr.checked_add(ph.memsz).is_none() {
        return Err(ElfError::AddressOverflow { index });
    }
    if ph.memsz == 0 {
        return Ok(None);
    }
    if ph.vaddr != ph.paddr {
        return Err(ElfError::VirtualPhysicalMismatch { index });
    }
    Ok(Some(Segment {
        index,
        gpa: ph.paddr,
        mem_size: ph.memsz,
        file_offset: ph.offset,
        file_size: ph.filesz,
        flags: SegmentFlags {
            read: ph.flags & PF_R != 0,
            write: ph.flags & PF_W != 0,
            execute: ph.flags & PF_X != 0,
        },
    }))
}

/// `bytes[offset..offset + len]`, or `None` if any of it lies outside (or overflows).
fn slice_at(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}
