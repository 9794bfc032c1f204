//! rootd against the in-process [`Fake`] hypervisor: the whole create → start → wait →
//! console → delete flow, every create error, the lifecycle rules, waits, and the socket
//! loop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hypercall::{GuestMemory, PartitionId, RegisterName};
use partition::{MemoryAccess, MemoryPool, StopReason as HvStop, names};

use crate::fake::{Fake, FakeScript};
use crate::protocol::{PartitionState, Request, Response, send};
use crate::server::Server;
use crate::service::{Handled, Service};
use crate::stop::StopReason;

const IMAGE_BASE: u64 = 0x20_0000;
/// `hlt; jmp $-3`.
const CODE: [u8; 3] = [0xF4, 0xEB, 0xFD];

fn tiny_elf() -> Vec<u8> {
    crate::fake::tiny_guest_elf()
}

/// A scratch folder with the tiny image and a config for it.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rootd-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("guests")).unwrap();
        std::fs::write(dir.join("guests/tiny.elf"), tiny_elf()).unwrap();
        std::fs::write(dir.join("guests/junk.elf"), b"not an elf at all").unwrap();
        Self { dir }
    }

    fn config_path(&self) -> String {
        self.dir.join("hello.toml").display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(name: &str, image: &str) -> String {
    format!("name = \"{name}\"\nimage = \"{image}\"\nmemory = \"4M\"\nargs = \"hello\"\n")
}

type Log = Arc<Mutex<Vec<String>>>;

fn service(pool_pages: u64) -> (Service<Fake>, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let service = Service::new(
        Fake::new(pool_pages),
        Box::new(move |line| sink.lock().unwrap().push(line.to_owned())),
    );
    (service, log)
}

fn reply(service: &mut Service<Fake>, request: Request) -> Response {
    match service.handle(request, Instant::now()) {
        Handled::Reply(response) => response,
        Handled::Pending(ticket) => panic!("unexpected pending {ticket:?}"),
    }
}

fn error_text(response: Response) -> String {
    match response {
        Response::Error { message } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn create(service: &mut Service<Fake>, scratch: &Scratch, name: &str) -> Response {
    reply(
        service,
        Request::Create {
            config: config(name, "guests/tiny.elf"),
            path: Some(scratch.config_path()),
        },
    )
}

fn name(n: &str) -> String {
    n.to_owned()
}

#[test]
fn create_start_wait_console_delete() {
    let scratch = Scratch::new("flow");
    let (mut service, log) = service(4096);
    service.hypervisor().push_script(FakeScript {
        console: b"GUEST HELLO partition=2\nGUEST PASS hello\n".to_vec(),
        stop: HvStop::Exited(0),
    });
    let Response::Created { name: created, id } = create(&mut service, &scratch, "hello") else {
        panic!("create failed");
    };
    assert_eq!((created.as_str(), id), ("hello", 2));

    // The image and the boot state are in the partition, as the loader defines them.
    let manager = service.hypervisor().manager_mut();
    let mut code = [0u8; 3];
    manager
        .guest_memory(PartitionId(id))
        .unwrap()
        .read(IMAGE_BASE, &mut code)
        .unwrap();
    assert_eq!(code, CODE);
    let partition = manager.partition(PartitionId(id)).unwrap();
    assert_eq!(partition.ram().mapped_pages(), 1024);
    let vcpu = partition.vcpu(0).unwrap();
    let reg = |n: u32| vcpu.get_register(RegisterName(n)).unwrap();
    assert_eq!(reg(names::RIP).low, IMAGE_BASE);
    assert_eq!(reg(names::RFLAGS).low, 0x202, "IF and the reserved bit");
    assert_eq!(reg(names::RAX + 7).low, 0x1000, "start-info page");
    assert_eq!(reg(names::EFER).low, (1 << 8) | (1 << 10));
    assert_eq!(reg(names::CS).high >> 48, 0xA09B);
    assert_eq!((reg(names::CS).high >> 32) & 0xFFFF, 0x08);
    assert_eq!(reg(names::SS).high >> 48, 0xC093);
    assert_eq!(reg(names::GDTR).high, 0x2000);
    let cr3 = reg(names::CR3).low;
    assert!(cr3 > IMAGE_BASE && cr3 < 4 << 20, "{cr3:#x}");

    assert_eq!(
        reply(
            &mut service,
            Request::Start {
                name: name("hello")
            }
        ),
        Response::Done
    );
    let now = Instant::now();
    let Handled::Pending(ticket) = service.handle(
        Request::Wait {
            name: name("hello"),
            timeout_ms: None,
        },
        now,
    ) else {
        panic!("wait answered at once");
    };
    assert!(service.ready_waiters(now).is_empty());
    let mut rounds = 0;
    while service.any_running() {
        service.step().unwrap();
        rounds += 1;
        assert!(rounds < 10, "the fake guest never stopped");
    }
    let ready = service.ready_waiters(now);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].0, ticket);
    let Response::Stopped { partition } = &ready[0].1 else {
        panic!("{:?}", ready[0].1);
    };
    assert_eq!(partition.reason, Some(StopReason::Exited { status: 0 }));
    assert_eq!(partition.reason_text(), "exited with status 0");

    let Response::Console {
        data,
        next_offset,
        state,
        ..
    } = reply(
        &mut service,
        Request::Console {
            name: name("hello"),
            offset: 0,
        },
    )
    else {
        panic!("console failed");
    };
    assert!(data.contains("GUEST PASS hello"), "{data}");
    assert_eq!(state, PartitionState::Stopped);
    let Response::Console { data: rest, .. } = reply(
        &mut service,
        Request::Console {
            name: name("hello"),
            offset: next_offset - 6,
        },
    ) else {
        panic!("console failed");
    };
    assert_eq!(rest, "hello\n");
    {
        let log = log.lock().unwrap();
        assert!(
            log.contains(&"[hello] GUEST HELLO partition=2".to_owned()),
            "{log:?}"
        );
        assert!(
            log.contains(&"[hello] GUEST PASS hello".to_owned()),
            "{log:?}"
        );
    }

    assert_eq!(
        reply(
            &mut service,
            Request::Delete {
                name: name("hello")
            }
        ),
        Response::Done
    );
    assert!(
        service
            .hypervisor()
            .manager()
            .partition(PartitionId(id))
            .is_none()
    );
    assert_eq!(service.hypervisor().manager().pool().free_frames(), 4096);
    let Response::List { partitions } = reply(&mut service, Request::List) else {
        panic!("list failed");
    };
    assert!(partitions.is_empty());
}

#[test]
fn create_errors_are_clear() {
    let scratch = Scratch::new("errors");
    let (mut service, _) = service(512);
    let missing = error_text(reply(
        &mut service,
        Request::Create {
            config: config("a", "guests/missing.elf"),
            path: Some(scratch.config_path()),
        },
    ));
    assert!(missing.contains("guests/missing.elf"), "{missing}");
    assert!(missing.contains("No such file"), "{missing}");
    let junk = error_text(reply(
        &mut service,
        Request::Create {
            config: config("a", "guests/junk.elf"),
            path: Some(scratch.config_path()),
        },
    ));
    assert!(
        junk.contains("junk.elf is not a valid guest image"),
        "{junk}"
    );
    // 512 pages = 2 MiB of pool for a 4 MiB partition.
    let pool = error_text(create(&mut service, &scratch, "a"));
    assert_eq!(
        pool,
        "Not enough memory in the child pool: \"a\" needs 4 MiB, 2 MiB of 2 MiB are free"
    );
    let syntax = error_text(reply(
        &mut service,
        Request::Create {
            config: "name = \n".into(),
            path: None,
        },
    ));
    assert!(syntax.contains("line 1"), "{syntax}");
    let vcpus = error_text(reply(
        &mut service,
        Request::Create {
            config: format!("{}vcpus = 4\n", config("a", "x")),
            path: None,
        },
    ));
    assert!(vcpus.contains("vcpus = 4 is not supported"), "{vcpus}");
    // Nothing was left behind in the hypervisor.
    assert_eq!(service.hypervisor().manager().partitions().count(), 1);

    let (mut service, _) = service_with_big_pool();
    assert!(matches!(
        create(&mut service, &scratch, "a"),
        Response::Created { .. }
    ));
    let duplicate = error_text(create(&mut service, &scratch, "a"));
    assert_eq!(duplicate, "A partition named \"a\" already exists");
}

fn service_with_big_pool() -> (Service<Fake>, Log) {
    service(8192)
}

#[test]
fn lifecycle_rules() {
    let scratch = Scratch::new("rules");
    let (mut service, _) = service_with_big_pool();
    for request in [
        Request::Start { name: name("nope") },
        Request::Stop { name: name("nope") },
        Request::Delete { name: name("nope") },
        Request::Console {
            name: name("nope"),
            offset: 0,
        },
        Request::Wait {
            name: name("nope"),
            timeout_ms: None,
        },
    ] {
        assert_eq!(
            error_text(reply(&mut service, request)),
            "No partition named \"nope\""
        );
    }
    create(&mut service, &scratch, "a");
    let not_running = error_text(reply(&mut service, Request::Stop { name: name("a") }));
    assert!(not_running.contains("is created"), "{not_running}");
    reply(&mut service, Request::Start { name: name("a") });
    let running = error_text(reply(&mut service, Request::Start { name: name("a") }));
    assert!(running.contains("is running: stop it first"), "{running}");
    // Stopped on request: it can be resumed.
    assert_eq!(
        reply(&mut service, Request::Stop { name: name("a") }),
        Response::Done
    );
    let Response::Stopped { partition } = reply(
        &mut service,
        Request::Wait {
            name: name("a"),
            timeout_ms: Some(0),
        },
    ) else {
        panic!("wait on a stopped partition must answer at once");
    };
    assert_eq!(partition.reason, Some(StopReason::Requested));
    assert_eq!(
        reply(&mut service, Request::Start { name: name("a") }),
        Response::Done
    );
    while service.any_running() {
        service.step().unwrap();
    }
    // Exited: it cannot be started again.
    let exited = error_text(reply(&mut service, Request::Start { name: name("a") }));
    assert_eq!(
        exited,
        "Partition \"a\" is stopped (exited with status 0): delete it and create it again"
    );
    // Deleting a running partition stops it first.
    create(&mut service, &scratch, "b");
    reply(&mut service, Request::Start { name: name("b") });
    assert_eq!(
        reply(&mut service, Request::Delete { name: name("b") }),
        Response::Done
    );
    assert!(!service.registry().contains("b"));
}

#[test]
fn faults_are_decoded_and_waits_time_out() {
    let scratch = Scratch::new("fault");
    let (mut service, log) = service_with_big_pool();
    service.hypervisor().push_script(FakeScript {
        console: b"touch-outside: reading 0x400000".to_vec(),
        stop: HvStop::OutsideMemory {
            gpa: 0x40_0000,
            access: MemoryAccess::Read,
        },
    });
    create(&mut service, &scratch, "faulty");
    create(&mut service, &scratch, "slow");
    reply(
        &mut service,
        Request::Start {
            name: name("faulty"),
        },
    );
    let start = Instant::now();
    let Handled::Pending(_) = service.handle(
        Request::Wait {
            name: name("faulty"),
            timeout_ms: Some(60_000),
        },
        start,
    ) else {
        panic!("answered at once");
    };
    while service.any_running() {
        service.step().unwrap();
    }
    let ready = service.ready_waiters(start);
    let Response::Stopped { partition } = &ready[0].1 else {
        panic!("{ready:?}");
    };
    assert_eq!(
        partition.reason_text(),
        "access to 0x400000, outside its memory"
    );
    assert!(!partition.reason.unwrap().is_success());
    // The unfinished last line is logged when the partition stops.
    assert!(
        log.lock()
            .unwrap()
            .contains(&"[faulty] touch-outside: reading 0x400000".to_owned())
    );

    // A wait with a deadline on a partition that never stops.
    let Handled::Pending(ticket) = service.handle(
        Request::Wait {
            name: name("slow"),
            timeout_ms: Some(10),
        },
        start,
    ) else {
        panic!("answered at once");
    };
    assert_eq!(
        service.next_deadline(),
        Some(start + Duration::from_millis(10))
    );
    assert!(service.ready_waiters(start).is_empty());
    let late = service.ready_waiters(start + Duration::from_millis(11));
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].0, ticket);
    assert!(error_text(late[0].1.clone()).contains("Timed out"));
    // A wait whose partition is deleted is answered too.
    service.handle(
        Request::Wait {
            name: name("slow"),
            timeout_ms: None,
        },
        start,
    );
    reply(&mut service, Request::Delete { name: name("slow") });
    let gone = service.ready_waiters(start);
    assert!(error_text(gone[0].1.clone()).contains("was deleted"));
}

#[test]
fn info_and_log() {
    let (mut service, _) = service(1024);
    let Response::Info(info) = reply(&mut service, Request::Info) else {
        panic!("info failed");
    };
    assert_eq!(info.backend, "AMD SVM with nested paging");
    assert_eq!(info.features, ["nested-paging", "nrip-save"]);
    assert_eq!((info.pool_total, info.pool_free), (4 << 20, 4 << 20));
    assert_eq!(info.protected.len(), 2);
    assert_eq!(info.protected[0].start, 0x100_0000);
    assert_eq!(info.partitions_alive, 1);
    assert_eq!(
        reply(
            &mut service,
            Request::Log {
                text: "MICA-SMOKE: PASS".into()
            }
        ),
        Response::Done
    );
    let root = service
        .hypervisor()
        .manager()
        .partition(partition::ROOT_PARTITION)
        .unwrap();
    assert_eq!(
        root.console().contents(),
        b"MICA-SMOKE: PASS\n",
        "a log line ends with a newline"
    );
}

#[test]
fn the_real_test_guest_loads_if_built() {
    let image =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/mica/guests/test_guest.elf");
    if !image.exists() {
        return;
    }
    let (mut service, _) = service_with_big_pool();
    let response = reply(
        &mut service,
        Request::Create {
            config: config("real", &image.display().to_string()),
            path: None,
        },
    );
    assert!(matches!(response, Response::Created { .. }), "{response:?}");
}

#[test]
fn the_socket_loop_serves_requests_and_waits() {
    let scratch = Scratch::new("socket");
    let socket = scratch.dir.join("run/rootd.sock");
    let mut server = Server::bind(&socket).unwrap();
    let (mut service, _) = service_with_big_pool();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        server.run_until(&mut service, || stop_flag.load(Ordering::Relaxed));
    });
    let timeout = Some(Duration::from_secs(10));
    let config_path = scratch.config_path();
    let created = send(
        &socket,
        &Request::Create {
            config: config("hello", "guests/tiny.elf"),
            path: Some(config_path),
        },
        timeout,
    )
    .unwrap();
    assert_eq!(
        created,
        Response::Created {
            name: name("hello"),
            id: 2
        }
    );
    assert_eq!(
        send(
            &socket,
            &Request::Start {
                name: name("hello")
            },
            timeout
        )
        .unwrap(),
        Response::Done
    );
    let waited = send(
        &socket,
        &Request::Wait {
            name: name("hello"),
            timeout_ms: Some(5000),
        },
        timeout,
    )
    .unwrap();
    let Response::Stopped { partition } = waited else {
        panic!("{waited:?}");
    };
    assert!(partition.reason.unwrap().is_success());
    // A malformed request gets an error, not a hang.
    {
        use std::io::{BufRead, BufReader, Write};
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream.write_all(b"{\"request\":\"reboot\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line).unwrap();
        assert!(line.contains("Bad request"), "{line}");
    }
    stop.store(true, Ordering::Relaxed);
    // Wake the loop so it sees the flag.
    let _ = send(&socket, &Request::List, timeout);
    thread.join().unwrap();
}
