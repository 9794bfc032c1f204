//! The commands: each sends its request to rootd and prints the answer to `out`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rootd::protocol::{InfoReply, PartitionState, PartitionSummary, Request, Response, send};
use rootd::service::error_chain;

use crate::Command;
use crate::selftest::{self, Verdict};

/// How long an ordinary request may take (creating a 1 GiB partition copies little but
/// maps many pages).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `console --follow` asks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

type Outcome = Result<u8, String>;

fn request(
    socket: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Response, String> {
    match send(socket, request, timeout) {
        Ok(Response::Error { message }) => Err(message),
        Ok(response) => Ok(response),
        Err(error) => Err(error_chain(&error)),
    }
}

fn unexpected(response: &Response) -> String {
    format!("unexpected answer from rootd: {response:?}")
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), String> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write output: {e}"))
}

/// Runs `command` against rootd at `socket`; returns the exit code, or the error message.
///
/// # Errors
/// rootd's error message, or why rootd could not be reached.
pub fn run(command: &Command, socket: &Path, out: &mut dyn Write) -> Outcome {
    let name_request = |make: fn(String) -> Request, name: &String| make(name.clone());
    match command {
        Command::Info => {
            let Response::Info(info) = request(socket, &Request::Info, Some(REQUEST_TIMEOUT))?
            else {
                return Err("unexpected answer from rootd".into());
            };
            write_out(out, &format_info(&info))?;
            Ok(0)
        }
        Command::Create { file } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let path = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
            let response = request(
                socket,
                &Request::Create {
                    config: text,
                    path: Some(path.display().to_string()),
                },
                Some(REQUEST_TIMEOUT),
            )?;
            let Response::Created { name, id } = response else {
                return Err(unexpected(&response));
            };
            write_out(out, &format!("created {name} (ID {id})\n"))?;
            Ok(0)
        }
        Command::Start { name } => {
            simple(socket, &name_request(|name| Request::Start { name }, name))
        }
        Command::Stop { name } => {
            simple(socket, &name_request(|name| Request::Stop { name }, name))
        }
        Command::Delete { name } => {
            simple(socket, &name_request(|name| Request::Delete { name }, name))
        }
        Command::Log { text } => simple(socket, &Request::Log { text: text.clone() }),
        Command::List => {
            let response = request(socket, &Request::List, Some(REQUEST_TIMEOUT))?;
            let Response::List { partitions } = response else {
                return Err(unexpected(&response));
            };
            write_out(out, &format_table(&partitions))?;
            Ok(0)
        }
        Command::Console { name, follow } => console(socket, name, *follow, out),
        Command::Wait { name, timeout } => {
            let response = request(
                socket,
                &Request::Wait {
                    name: name.clone(),
                    timeout_ms: timeout.map(|s| s.saturating_mul(1000)),
                },
                None,
            )?;
            let Response::Stopped { partition } = response else {
                return Err(unexpected(&response));
            };
            write_out(
                out,
                &format!("{}: {}\n", partition.name, partition.reason_text()),
            )?;
            Ok(if partition.reason.is_some_and(|r| r.is_success()) {
                0
            } else {
                1
            })
        }
        Command::Selftest { window } => run_selftest(socket, *window, out),
    }
}

fn simple(socket: &Path, req: &Request) -> Outcome {
    match request(socket, req, Some(REQUEST_TIMEOUT))? {
        Response::Done => Ok(0),
        other => Err(unexpected(&other)),
    }
}

fn console(socket: &Path, name: &str, follow: bool, out: &mut dyn Write) -> Outcome {
    let mut offset = 0;
    loop {
        let response = request(
            socket,
            &Request::Console {
                name: name.to_owned(),
                offset,
            },
            Some(REQUEST_TIMEOUT),
        )?;
        let Response::Console {
            data,
            next_offset,
            state,
            ..
        } = response
        else {
            return Err(unexpected(&response));
        };
        write_out(out, &data)?;
        let progressed = next_offset != offset;
        offset = next_offset;
        if !follow || (state != PartitionState::Running && !progressed) {
            return Ok(0);
        }
        if !progressed {
            std::thread::sleep(FOLLOW_INTERVAL);
        }
    }
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// `hvctl info` output.
#[must_use]
pub fn format_info(info: &InfoReply) -> String {
    let mut text = format!(
        "Mica {} (build {})\nbackend:    {}\nfeatures:   {}\npool:       {} MiB free of {} MiB\npartitions: {} alive (root included), at most {}\n",
        info.version,
        info.build,
        info.backend,
        if info.features.is_empty() {
            "none".to_owned()
        } else {
            info.features.join(", ")
        },
        mib(info.pool_free),
        mib(info.pool_total),
        info.partitions_alive,
        info.max_partitions,
    );
    text.push_str("protected:\n");
    for range in &info.protected {
        text.push_str(&format!(
            "  {:#014x}-{:#014x} ({} KiB)\n",
            range.start,
            range.end,
            range.end.saturating_sub(range.start) >> 10
        ));
    }
    if !info.partitions.is_empty() {
        text.push_str(&format_table(&info.partitions));
    }
    text
}

/// `hvctl list` output: ID, NAME, STATE, MEMORY, REASON.
#[must_use]
pub fn format_table(partitions: &[PartitionSummary]) -> String {
    let width = partitions
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut text = format!(
        "{:>4}  {:<width$}  {:<8}  {:>8}  REASON\n",
        "ID", "NAME", "STATE", "MEMORY"
    );
    for p in partitions {
        let line = format!(
            "{:>4}  {:<width$}  {:<8}  {:>8}  {}",
            p.id,
            p.name,
            p.state.as_str(),
            format!("{} MiB", mib(p.memory)),
            p.reason_text()
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

fn run_selftest(socket: &Path, window: bool, out: &mut dyn Write) -> Outcome {
    let mut results: Vec<(String, Verdict)> = vec![
        ("unprivileged-doorbell".into(), selftest::check_doorbell()),
        ("unprivileged-devmem".into(), selftest::check_devmem()),
    ];
    match request(socket, &Request::Info, Some(REQUEST_TIMEOUT)) {
        Ok(Response::Info(info)) if !info.protected.is_empty() => {
            for range in &info.protected {
                for (page, label) in selftest::probe_pages(range.start, range.end) {
                    results.push((
                        format!(
                            "root-protected {page:#x} ({label} of {:#x}-{:#x})",
                            range.start, range.end
                        ),
                        selftest::check_protected_page(page),
                    ));
                }
            }
        }
        Ok(Response::Info(_)) => results.push((
            "root-protected".into(),
            Verdict::Fail("the hypervisor reports no protected ranges".into()),
        )),
        Ok(other) => results.push(("root-protected".into(), Verdict::Fail(unexpected(&other)))),
        Err(message) => results.push((
            "root-protected".into(),
            Verdict::Fail(format!("no ranges from rootd: {message}")),
        )),
    }
    if window {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let verdict = hypercall::root_abi::parse_window(&cmdline).map_or_else(
            || Verdict::Fail("no mica.window= on the kernel command line".into()),
            |(start, _)| selftest::check_window(start),
        );
        results.push(("window-readable".into(), verdict));
    }
    let mut failed = false;
    for (name, verdict) in &results {
        failed |= !verdict.passed();
        write_out(out, &format!("{}\n", selftest::report_line(name, verdict)))?;
    }
    Ok(u8::from(failed))
}

#[cfg(test)]
mod tests;
