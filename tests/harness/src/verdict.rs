//! Judging how a run ended, and matching serial output. Pure functions, tested without an
//! emulator.

/// QEMU's exit status when the hypervisor wrote 0x10 to the debug-exit port (success).
pub const QEMU_SUCCESS_STATUS: i32 = (0x10 << 1) | 1;
/// QEMU's exit status when the hypervisor wrote 0x11 to the debug-exit port (failure).
pub const QEMU_FAILURE_STATUS: i32 = (0x11 << 1) | 1;

/// The serial line prefix the hypervisor prints last, before it exits.
pub const EXIT_LINE_PREFIX: &str = "MICA EXIT: ";

/// How an emulator run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// QEMU ended with status 33: the hypervisor reported success on the debug-exit port.
    Success,
    /// QEMU ended with status 35: the hypervisor reported failure on the debug-exit port.
    Failure,
    /// QEMU ended any other way: its exit status, or 128 + the signal number if a signal
    /// ended it (0 is a reset or power-off under `-no-reboot`, 1 is usually a QEMU error).
    Abnormal(i32),
    /// The run did not end before the timeout; the emulator was killed.
    Timeout,
    /// Bochs ended (it always exits with status 1): the verdict comes from the serial log.
    BochsFinished,
}

impl core::fmt::Display for Exit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Success => write!(f, "success (QEMU status {QEMU_SUCCESS_STATUS})"),
            Self::Failure => write!(f, "failure (QEMU status {QEMU_FAILURE_STATUS})"),
            Self::Abnormal(code) => write!(f, "abnormal end (status {code})"),
            Self::Timeout => f.write_str("timeout (emulator killed)"),
            Self::BochsFinished => f.write_str("Bochs finished (verdict from the serial log)"),
        }
    }
}

/// Classifies QEMU's exit status: `code` and `signal` as `std::process::ExitStatus` reports
/// them.
pub fn judge_qemu_status(code: Option<i32>, signal: Option<i32>) -> Exit {
    match (code, signal) {
        (Some(QEMU_SUCCESS_STATUS), _) => Exit::Success,
        (Some(QEMU_FAILURE_STATUS), _) => Exit::Failure,
        (Some(code), _) => Exit::Abnormal(code),
        (None, Some(signal)) => Exit::Abnormal(signal.saturating_add(128)),
        // Neither a code nor a signal: not possible on Unix; treat as abnormal.
        (None, None) => Exit::Abnormal(-1),
    }
}

/// What the hypervisor's last `MICA EXIT:` line reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportedExit {
    /// `MICA EXIT: success`.
    Success,
    /// `MICA EXIT: failure`.
    Failure,
    /// A `MICA EXIT:` line with any other word (a truncated or garbled line).
    Unrecognised,
}

/// Finds the last `MICA EXIT:` line in `serial` and reads its verdict.
pub fn reported_exit(serial: &str) -> Option<ReportedExit> {
    let start = serial.rfind(EXIT_LINE_PREFIX)?;
    let rest = serial.get(start + EXIT_LINE_PREFIX.len()..)?;
    let word = rest.lines().next().unwrap_or("").trim();
    Some(match word {
        "success" => ReportedExit::Success,
        "failure" => ReportedExit::Failure,
        _ => ReportedExit::Unrecognised,
    })
}

/// A marker that [`find_markers_in_order`] did not find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerError {
    /// Index of the missing marker in the list.
    pub index: usize,
    /// The missing marker.
    pub marker: String,
    /// The marker does occur, but only before the previous marker's match (out of order).
    pub out_of_order: bool,
}

impl core::fmt::Display for MarkerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.out_of_order {
            write!(
                f,
                "marker #{} {:?} appears only before the previous marker",
                self.index, self.marker
            )
        } else {
            write!(f, "marker #{} {:?} not found", self.index, self.marker)
        }
    }
}

/// Checks that each marker occurs in `text`, each one after the end of the previous one's
/// match (markers may share a line).
///
/// # Errors
/// The first marker not found after its predecessor.
pub fn find_markers_in_order(text: &str, markers: &[&str]) -> Result<(), MarkerError> {
    let mut from = 0;
    for (index, marker) in markers.iter().enumerate() {
        match text.get(from..).and_then(|rest| rest.find(marker)) {
            Some(at) => from = from + at + marker.len(),
            None => {
                return Err(MarkerError {
                    index,
                    marker: (*marker).to_owned(),
                    out_of_order: text.contains(marker),
                });
            }
        }
    }
    Ok(())
}

/// The last `n` lines of `text` (all of it if it has fewer).
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].join("\n")
}

/// Serial bytes as text: invalid UTF-8 replaced, carriage returns dropped.
pub fn normalize_serial(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\r', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_statuses() {
        assert_eq!(judge_qemu_status(Some(33), None), Exit::Success);
        assert_eq!(judge_qemu_status(Some(35), None), Exit::Failure);
        assert_eq!(judge_qemu_status(Some(0), None), Exit::Abnormal(0));
        assert_eq!(judge_qemu_status(Some(1), None), Exit::Abnormal(1));
        assert_eq!(judge_qemu_status(Some(3), None), Exit::Abnormal(3));
        assert_eq!(judge_qemu_status(None, Some(9)), Exit::Abnormal(137));
        assert_eq!(judge_qemu_status(None, None), Exit::Abnormal(-1));
    }

    #[test]
    fn reported_exit_reads_the_last_line() {
        assert_eq!(reported_exit("booting\n"), None);
        assert_eq!(
            reported_exit("MICA READY\nMICA EXIT: success\n"),
            Some(ReportedExit::Success)
        );
        assert_eq!(
            reported_exit("MICA EXIT: success\nMICA FAULT: x\nMICA EXIT: failure"),
            Some(ReportedExit::Failure)
        );
        assert_eq!(
            reported_exit("MICA EXIT: succ"),
            Some(ReportedExit::Unrecognised)
        );
        assert_eq!(
            reported_exit("MICA EXIT: "),
            Some(ReportedExit::Unrecognised)
        );
    }

    #[test]
    fn markers_must_appear_in_order() {
        let text = "Mica 0.1 starting (loader=Multiboot1)\n\
                    svm: supported=yes asid=16 npt=yes nrip_save=no\n\
                    MICA READY\nMICA EXIT: success\n";
        assert_eq!(
            find_markers_in_order(
                text,
                &[
                    "loader=Multiboot1",
                    "svm: supported=yes",
                    "npt=yes",
                    "nrip_save=no",
                    "MICA READY",
                    "MICA EXIT: success",
                ]
            ),
            Ok(())
        );
        assert_eq!(find_markers_in_order(text, &[]), Ok(()));

        let err = find_markers_in_order(text, &["MICA READY", "npt=yes"]).expect_err("order");
        assert_eq!(err.index, 1);
        assert!(err.out_of_order);
        assert!(err.to_string().contains("before the previous"));

        let err = find_markers_in_order(text, &["MICA READY", "vmx:"]).expect_err("missing");
        assert_eq!(
            err,
            MarkerError {
                index: 1,
                marker: "vmx:".into(),
                out_of_order: false
            }
        );
    }

    #[test]
    fn the_same_marker_twice_needs_two_occurrences() {
        let once = "MICA EXIT: failure\n";
        assert!(find_markers_in_order(once, &["MICA EXIT:", "MICA EXIT:"]).is_err());
        let twice = "MICA EXIT: failure\nMICA EXIT: failure\n";
        assert!(find_markers_in_order(twice, &["MICA EXIT:", "MICA EXIT:"]).is_ok());
    }

    #[test]
    fn last_lines_keeps_the_tail() {
        let text: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        let tail = last_lines(&text, 40);
        assert_eq!(tail.lines().count(), 40);
        assert!(tail.starts_with("line 11\n"));
        assert!(tail.ends_with("line 50"));
        assert_eq!(last_lines("a\nb", 40), "a\nb");
        assert_eq!(last_lines("", 40), "");
    }

    #[test]
    fn serial_normalisation() {
        assert_eq!(
            normalize_serial(b"\rMICA READY\r\nok\xff\n"),
            "MICA READY\nok\u{fffd}\n"
        );
    }
}
