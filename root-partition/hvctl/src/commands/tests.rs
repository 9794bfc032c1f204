//! hvctl's commands against a real rootd socket loop over the in-process fake hypervisor.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use partition::{MemoryAccess, StopReason as HvStop};
use rootd::fake::{Fake, FakeScript, tiny_guest_elf};
use rootd::protocol::{PartitionState, PartitionSummary, Request, send};
use rootd::server::Server;
use rootd::service::Service;
use rootd::stop::StopReason;

use super::*;

/// rootd on a scratch socket, in a thread.
struct Rootd {
    dir: PathBuf,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Rootd {
    fn start(tag: &str, scripts: Vec<FakeScript>) -> Self {
        let dir = std::env::temp_dir().join(format!("hvctl-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("guest.elf"), tiny_guest_elf()).unwrap();
        let socket = dir.join("rootd.sock");
        let mut server = Server::bind(&socket).unwrap();
        let mut fake = Fake::new(4096);
        for script in scripts {
            fake.push_script(script);
        }
        let mut service = Service::new(fake, Box::new(|_| {}));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            server.run_until(&mut service, || flag.load(Ordering::Relaxed));
        });
        Self {
            dir,
            socket,
            stop,
            thread: Some(thread),
        }
    }

    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("name = \"{name}\"\nimage = \"guest.elf\"\nmemory = \"4M\"\n{extra}"),
        )
        .unwrap();
        path
    }

    fn run(&self, command: Command) -> (Outcome, String) {
        let mut out = Vec::new();
        let outcome = run(&command, &self.socket, &mut out);
        (outcome, String::from_utf8(out).unwrap())
    }
}

impl Drop for Rootd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the loop so it sees the flag.
        let _ = send(&self.socket, &Request::List, None);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn name(n: &str) -> String {
    n.to_owned()
}

#[test]
fn create_start_wait_console_list_delete() {
    let rootd = Rootd::start(
        "flow",
        vec![FakeScript {
            console: b"GUEST HELLO partition=2\nGUEST PASS hello\n".to_vec(),
            stop: HvStop::Exited(0),
        }],
    );
    let file = rootd.config("hello", "args = \"hello\"\n");
    assert_eq!(
        rootd.run(Command::Create { file }),
        (Ok(0), "created hello (ID 2)\n".into())
    );
    let (outcome, table) = rootd.run(Command::List);
    assert_eq!(outcome, Ok(0));
    assert_eq!(
        table,
        "  ID  NAME   STATE       MEMORY  REASON\n   2  hello  created      4 MiB\n"
    );
    assert_eq!(
        rootd
            .run(Command::Start {
                name: name("hello")
            })
            .0,
        Ok(0)
    );
    assert_eq!(
        rootd.run(Command::Wait {
            name: name("hello"),
            timeout: Some(30)
        }),
        (Ok(0), "hello: exited with status 0\n".into())
    );
    let (outcome, console) = rootd.run(Command::Console {
        name: name("hello"),
        follow: true,
    });
    assert_eq!(outcome, Ok(0));
    assert_eq!(console, "GUEST HELLO partition=2\nGUEST PASS hello\n");
    assert_eq!(
        rootd
            .run(Command::Delete {
                name: name("hello")
            })
            .0,
        Ok(0)
    );
    let (_, table) = rootd.run(Command::List);
    assert_eq!(table.lines().count(), 1);
    assert_eq!(
        rootd
            .run(Command::Log {
                text: "hello from hvctl".into()
            })
            .0,
        Ok(0)
    );
}

#[test]
fn failures_give_messages_and_exit_codes() {
    let rootd = Rootd::start(
        "fail",
        vec![FakeScript {
            console: Vec::new(),
            stop: HvStop::OutsideMemory {
                gpa: 0x40_0000,
                access: MemoryAccess::Write,
            },
        }],
    );
    let file = rootd.config("faulty", "args = \"touch-outside\"\n");
    assert_eq!(rootd.run(Command::Create { file: file.clone() }).0, Ok(0));
    assert_eq!(
        rootd.run(Command::Create { file }).0,
        Err("A partition named \"faulty\" already exists".into())
    );
    assert_eq!(
        rootd
            .run(Command::Start {
                name: name("faulty")
            })
            .0,
        Ok(0)
    );
    // A guest that faults: wait reports it and exits 1.
    assert_eq!(
        rootd.run(Command::Wait {
            name: name("faulty"),
            timeout: None
        }),
        (
            Ok(1),
            "faulty: access to 0x400000, outside its memory\n".into()
        )
    );
    assert_eq!(
        rootd.run(Command::Start { name: name("nope") }).0,
        Err("No partition named \"nope\"".into())
    );
    let missing = rootd.run(Command::Create {
        file: rootd.dir.join("absent.toml"),
    });
    assert!(missing.0.unwrap_err().contains("absent.toml"));
    let bad = rootd.config("bad", "vcpus = 2\n");
    assert!(
        rootd
            .run(Command::Create { file: bad })
            .0
            .unwrap_err()
            .contains("vcpus = 2 is not supported")
    );
    // A wait that times out is an error (exit code 1 from main).
    let file = rootd.config("idle", "");
    assert_eq!(rootd.run(Command::Create { file }).0, Ok(0));
    let waited = rootd.run(Command::Wait {
        name: name("idle"),
        timeout: Some(0),
    });
    assert!(waited.0.unwrap_err().contains("Timed out"));
}

#[test]
fn no_rootd_is_a_clear_error() {
    let mut out = Vec::new();
    let error = run(
        &Command::List,
        std::path::Path::new("/nonexistent/rootd.sock"),
        &mut out,
    )
    .unwrap_err();
    assert!(
        error.starts_with("Cannot connect to rootd at /nonexistent/rootd.sock"),
        "{error}"
    );
}

#[test]
fn info_and_table_formatting() {
    let rootd = Rootd::start("info", Vec::new());
    let (outcome, text) = rootd.run(Command::Info);
    assert_eq!(outcome, Ok(0));
    assert!(
        text.contains("backend:    AMD SVM with nested paging"),
        "{text}"
    );
    assert!(text.contains("pool:       16 MiB free of 16 MiB"), "{text}");
    assert!(
        text.contains("0x000001000000-0x000002000000 (16384 KiB)"),
        "{text}"
    );
    let table = format_table(&[PartitionSummary {
        id: 3,
        name: "a-long-name".into(),
        state: PartitionState::Stopped,
        memory: 64 << 20,
        reason: Some(StopReason::TripleFault),
        console_bytes: 0,
    }]);
    assert_eq!(
        table,
        "  ID  NAME         STATE       MEMORY  REASON\n   3  a-long-name  stopped     64 MiB  triple fault\n"
    );
}
