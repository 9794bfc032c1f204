//! `vmbus-bench`: VMBus ring throughput and latency between two processes on two cores, against
//! memcpy and an `rtrb` SPSC queue on the same machine. Run by `cargo xtask bench vmbus`.
#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use vsp_vsc_harness::bench::{BenchResults, BenchVsc, BenchVsp, Interleave, Interleaved};
use vsp_vsc_harness::{HarnessError, PairOptions, connect_file, serve_file};

/// Measure the VMBus ring between two processes pinned to two cores (this process runs the VSC
/// and spawns itself as the VSP), plus memcpy and rtrb baselines. The last two lines are the
/// ratios `bulk_vs_memcpy` (16 KiB packet byte rate / memcpy byte rate; goal >= 0.8) and
/// `small_vs_rtrb` (64 B packet rate / rtrb 64 B message rate; goal >= 1.0), each the median of
/// per-round ratios from alternating short ring and reference rounds, so a machine whose speed
/// drifts over seconds moves both sides of each ratio together.
#[derive(Parser, Debug)]
#[command(name = "vmbus-bench")]
struct Cli {
    /// Milliseconds per measurement.
    #[arg(long, default_value_t = 2000)]
    duration_ms: u64,
    /// Data bytes of each channel ring.
    #[arg(long, default_value_t = 1 << 20)]
    ring_size: usize,
    /// Packet payload sizes to stream for the table (the ratios always use 16384 and 64).
    #[arg(long, value_delimiter = ',', default_values_t = SIZES)]
    sizes: Vec<usize>,
    /// Ring/reference round pairs per ratio.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Milliseconds per ratio round (each side of a pair).
    #[arg(long, default_value_t = 250)]
    round_ms: u64,
    /// Internal: serve the bench VSP from this file (the spawned peer process).
    #[arg(long, hide = true)]
    peer: Option<PathBuf>,
}

const SIZES: [usize; 4] = [64, 1024, 16 * 1024, 64 * 1024];
/// Payload of the bulk ratio's packets and memcpy chunks.
const BULK: usize = 16 * 1024;
/// Payload of the small ratio's packets and rtrb messages.
const SMALL: usize = 64;

/// Pins the calling thread to `cpu` (best effort: a machine with fewer CPUs runs unpinned).
#[allow(unsafe_code)]
fn pin_to_cpu(cpu: usize) {
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: `cpu` is below CPU_SETSIZE, so the bit lies inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid, initialised cpu_set_t of the size passed; pid 0 is this thread.
    let _ = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.peer {
        Some(path) => peer(&cli, path),
        None => lead(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut text = format!("Error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{text}");
            ExitCode::FAILURE
        }
    }
}

fn options(cli: &Cli) -> PairOptions {
    PairOptions {
        ring_bytes: cli.ring_size,
        ..PairOptions::default()
    }
}

fn peer(cli: &Cli, path: &std::path::Path) -> Result<(), HarnessError> {
    pin_to_cpu(1);
    let mut vsp = BenchVsp::default();
    let result = serve_file(&mut vsp, path, &options(cli));
    let _ = std::fs::remove_file(path);
    result
}

fn lead(cli: &Cli) -> Result<(), HarnessError> {
    let duration = Duration::from_millis(cli.duration_ms);
    let path = std::env::temp_dir().join(format!("vmbus-bench-{}.shm", std::process::id()));
    let exe = std::env::current_exe().map_err(|source| HarnessError::Io {
        path: "current executable".into(),
        source,
    })?;
    let mut child = Command::new(exe)
        .arg("--peer")
        .arg(&path)
        .arg("--ring-size")
        .arg(cli.ring_size.to_string())
        .spawn()
        .map_err(|source| HarnessError::Io {
            path: "vmbus-bench peer".into(),
            source,
        })?;
    pin_to_cpu(0);
    let round = Duration::from_millis(cli.round_ms);
    let ring_size = cli.ring_size;
    let mut vsc = BenchVsc {
        sizes: cli.sizes.clone(),
        duration,
        // Both references run on this thread between ring rounds, while the VSP process waits
        // on its notifier: same cores, same pinning as the ring.
        interleave: vec![
            Interleave {
                name: "bulk_vs_memcpy",
                size: BULK,
                rounds: cli.rounds,
                round,
                reference: Box::new(move |d| memcpy_rate(BULK, ring_size, d) / BULK as f64),
            },
            Interleave {
                name: "small_vs_rtrb",
                size: SMALL,
                rounds: cli.rounds,
                round,
                reference: Box::new(rtrb_rate),
            },
        ],
    };
    let results = connect_file(&mut vsc, &path, &options(cli));
    let status = child.wait();
    let _ = std::fs::remove_file(&path);
    let results = results?;
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("warning: the VSP process did not exit cleanly");
    }
    report(&results);
    Ok(())
}

/// Bytes per second copying `chunk`-byte pieces from one `span`-byte buffer to another, the
/// position advancing like a ring's (the same bytes a ring of that size carries).
fn memcpy_rate(chunk: usize, span: usize, duration: Duration) -> f64 {
    pin_to_cpu(0);
    let src = vec![0x5au8; span.max(chunk)];
    let mut dst = vec![0u8; span.max(chunk)];
    let pieces = src.len() / chunk;
    let start = Instant::now();
    let mut copied = 0u64;
    let mut at = 0;
    while start.elapsed() < duration {
        for _ in 0..64 {
            let range = at * chunk..(at + 1) * chunk;
            dst[range.clone()].copy_from_slice(&src[range]);
            at = (at + 1) % pieces;
            copied += chunk as u64;
        }
        std::hint::black_box(&mut dst);
    }
    copied as f64 / start.elapsed().as_secs_f64()
}

/// 64-byte messages per second through an `rtrb` queue between two threads on two cores.
fn rtrb_rate(duration: Duration) -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<[u8; 64]>::new(16 * 1024);
    let consumer = std::thread::spawn(move || {
        pin_to_cpu(1);
        let mut received = 0u64;
        loop {
            match rx.pop() {
                Ok(msg) => {
                    if msg[0] == 0xff {
                        return received;
                    }
                    std::hint::black_box(&msg);
                    received += 1;
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
    });
    pin_to_cpu(0);
    let msg = [0x5au8; 64];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        for _ in 0..64 {
            while tx.push(msg).is_err() {
                std::hint::spin_loop();
            }
            sent += 1;
        }
    }
    while tx.push([0xff; 64]).is_err() {
        std::hint::spin_loop();
    }
    let received = consumer.join().unwrap_or(0);
    let secs = start.elapsed().as_secs_f64();
    debug_assert_eq!(received, sent);
    received as f64 / secs
}

fn report(results: &BenchResults) {
    let find = |name| results.interleaved.iter().find(|r| r.name == name);
    let bulk = find("bulk_vs_memcpy");
    let small = find("small_vs_rtrb");
    let reference = |r: Option<&Interleaved>| {
        r.and_then(Interleaved::median_reference_per_sec)
            .unwrap_or(0.0)
    };
    println!("{:<34} {:>14} {:>12}", "measurement", "packets/s", "MB/s");
    for t in &results.throughput {
        println!(
            "{:<34} {:>14.0} {:>12.1}",
            format!("vmbus ring, {} B packets", t.size),
            t.packets_per_sec,
            t.bytes_per_sec / 1e6
        );
    }
    println!(
        "{:<34} {:>14} {:>12.1}",
        "memcpy, 16 KiB chunks (median)",
        "-",
        reference(bulk) * BULK as f64 / 1e6
    );
    let rtrb = reference(small);
    println!(
        "{:<34} {:>14.0} {:>12.1}",
        "rtrb, 64 B messages (median)",
        rtrb,
        rtrb * SMALL as f64 / 1e6
    );
    println!(
        "ping-pong 64 B round trip: median {} ns, p99 {} ns ({} samples)",
        results.latency.median_ns, results.latency.p99_ns, results.latency.samples
    );
    for r in &results.interleaved {
        let (lo, hi) = r.ratio_range().unwrap_or((0.0, 0.0));
        let ring = r.median_ring_per_sec().unwrap_or(0.0);
        let reference = r.median_reference_per_sec().unwrap_or(0.0);
        let bytes = r.size as f64 / 1e6;
        println!(
            "{}: {} rounds x {} ms each side, {} B: median ring {:.0}/s ({:.1} MB/s), \
             median reference {:.0}/s ({:.1} MB/s), per-round ratio min {:.2} max {:.2}",
            r.name,
            r.pairs.len(),
            r.round.as_millis(),
            r.size,
            ring,
            ring * bytes,
            reference,
            reference * bytes,
            lo,
            hi
        );
        let each: Vec<String> = r
            .pairs
            .iter()
            .map(|p| format!("{:.2}", p.ratio()))
            .collect();
        println!("  {} per-round ratios: {}", r.name, each.join(" "));
    }
    let ratio = |r: Option<&Interleaved>| r.and_then(Interleaved::median_ratio).unwrap_or(0.0);
    println!("bulk_vs_memcpy: {:.2}", ratio(bulk));
    println!("small_vs_rtrb: {:.2}", ratio(small));
}
