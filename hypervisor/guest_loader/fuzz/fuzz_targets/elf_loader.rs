//! Fuzzes the test-guest ELF loader: arbitrary image bytes, RAM size and argument string
//! must never panic, and whatever loads must respect the guest layout.
#![no_main]

use guest_loader::{ElfImage, FakeRam, GuestRam, Layout, LoadParams, StartInfo, load};
use libfuzzer_sys::fuzz_target;

const MIB: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // First byte: RAM size, 0..=10 MiB in 2 MiB steps (0 and 2 MiB are invalid);
    // second byte: argument length.
    let [ram_units, args_len, image @ ..] = data else {
        return;
    };
    let ram_size = usize::from(ram_units % 6) * 2 * MIB;
    let args_len = usize::from(*args_len).min(image.len());
    let args = core::str::from_utf8(&image[..args_len]).unwrap_or("fuzz");
    // Allocating RAM is the slow part: only images the parser accepts get that far
    // (`load` parses first and would refuse the others the same way).
    if ElfImage::parse(image).is_err() {
        return;
    }
    let mut ram = FakeRam::new(ram_size);
    let params = LoadParams {
        partition_id: 1,
        vp_index: 0,
        args,
    };
    if let Ok(state) = load(image, &params, &mut ram) {
        let layout = Layout::new(ram.ram_size()).expect("load accepted the RAM size");
        let parsed = ElfImage::parse(image).expect("load accepted the image");
        for segment in parsed.segments() {
            assert!(segment.end() <= layout.stack().start);
        }
        assert_eq!(state.rsp, layout.stack_top());
        let mut bytes = [0u8; size_of::<StartInfo>()];
        ram.read(state.rdi, &mut bytes).expect("start info in RAM");
        let info = StartInfo::copy_from_prefix(&bytes).expect("whole structure");
        let view = info.validate().expect("start info valid");
        assert_eq!(view.args, args);
    }
});
