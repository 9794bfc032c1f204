//! The control protocol between `hvctl` and `rootd`: one JSON request line and one JSON
//! response line per connection to a Unix stream socket ([`DEFAULT_SOCKET`], overridable
//! with [`SOCKET_ENV`]).
//!
//! ```text
//! -> {"request":"start","name":"hello"}
//! <- {"result":"done"}
//! -> {"request":"wait","name":"hello","timeout_ms":5000}
//! <- {"result":"stopped","partition":{"id":2,"name":"hello","state":"stopped",...}}
//! <- {"result":"error","message":"No partition named \"x\""}
//! ```

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stop::StopReason;

/// Where rootd listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/mica/rootd.sock";
/// Environment variable naming another socket path (for rootd and hvctl).
pub const SOCKET_ENV: &str = "MICA_ROOTD_SOCKET";
/// The longest request line rootd reads (a config file is small).
pub const MAX_REQUEST: u64 = 256 * 1024;

/// The socket path: `explicit`, else `$MICA_ROOTD_SOCKET`, else [`DEFAULT_SOCKET`].
#[must_use]
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    explicit.map_or_else(
        || {
            std::env::var_os(SOCKET_ENV)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_SOCKET), PathBuf::from)
        },
        Path::to_path_buf,
    )
}

/// A request to rootd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// What the hypervisor is and has, and rootd's partitions.
    Info,
    /// Create (and load) a partition from a TOML config.
    Create {
        /// The TOML text.
        config: String,
        /// The file it came from (relative image paths are relative to its folder).
        path: Option<String>,
    },
    /// Start (or resume) a partition.
    Start {
        /// Partition name.
        name: String,
    },
    /// Stop a running partition.
    Stop {
        /// Partition name.
        name: String,
    },
    /// Every partition.
    List,
    /// Console bytes from an absolute offset.
    Console {
        /// Partition name.
        name: String,
        /// Absolute offset (0: everything kept).
        offset: u64,
    },
    /// Delete a partition (stopping it first if it runs).
    Delete {
        /// Partition name.
        name: String,
    },
    /// Answer when the partition has stopped (or after the timeout).
    Wait {
        /// Partition name.
        name: String,
        /// Milliseconds to wait at most (`None`: no limit).
        timeout_ms: Option<u64>,
    },
    /// Print a line in the hypervisor's debug log.
    Log {
        /// The text.
        text: String,
    },
}

/// A partition's lifecycle as rootd reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionState {
    /// Loaded, VP 0 ready, never started.
    Created,
    /// Running.
    Running,
    /// Stopped (see the reason).
    Stopped,
}

impl PartitionState {
    /// Lower-case name, as `hvctl list` prints it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }
}

/// One partition in a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSummary {
    /// Hypervisor partition ID.
    pub id: u64,
    /// Name.
    pub name: String,
    /// State.
    pub state: PartitionState,
    /// RAM in bytes.
    pub memory: u64,
    /// Why it stopped (when stopped).
    pub reason: Option<StopReason>,
    /// Console bytes received so far.
    pub console_bytes: u64,
}

impl PartitionSummary {
    /// The stop reason as text ("" if none).
    #[must_use]
    pub fn reason_text(&self) -> String {
        self.reason.map(|r| r.to_string()).unwrap_or_default()
    }
}

/// A physical range the root cannot reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// The hypervisor-info reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoReply {
    /// "major.minor".
    pub version: String,
    /// Build number.
    pub build: u32,
    /// "AMD SVM", "Intel VMX" or "unknown (N)".
    pub backend: String,
    /// Feature names in use.
    pub features: Vec<String>,
    /// Child pool size in bytes.
    pub pool_total: u64,
    /// Free pool bytes.
    pub pool_free: u64,
    /// Partitions alive (root included).
    pub partitions_alive: u32,
    /// The most partitions at once.
    pub max_partitions: u32,
    /// Ranges the root can never reach.
    pub protected: Vec<Range>,
    /// rootd's partitions.
    pub partitions: Vec<PartitionSummary>,
}

/// rootd's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// The request was carried out.
    Done,
    /// Hypervisor info.
    Info(InfoReply),
    /// A partition was created.
    Created {
        /// Its name.
        name: String,
        /// Its ID.
        id: u64,
    },
    /// Every partition.
    List {
        /// The partitions, by ID.
        partitions: Vec<PartitionSummary>,
    },
    /// Console bytes.
    Console {
        /// The text (invalid UTF-8 replaced).
        data: String,
        /// Absolute offset of the first byte returned (later than asked if older bytes
        /// were dropped).
        offset: u64,
        /// Offset to ask for next.
        next_offset: u64,
        /// The partition's state now (a follower stops once it is not running).
        state: PartitionState,
    },
    /// The partition waited for has stopped.
    Stopped {
        /// It, with its reason.
        partition: PartitionSummary,
    },
    /// The request failed.
    Error {
        /// Why, for a human.
        message: String,
    },
}

/// A failure talking to rootd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Cannot connect.
    #[error("Cannot connect to rootd at {path} (is rootd running?)")]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing failed.
    #[error("Talking to rootd failed")]
    Io(#[from] io::Error),
    /// The answer is not a valid response.
    #[error("rootd sent an invalid response")]
    Decode(#[from] serde_json::Error),
}

/// Writes one message as a JSON line.
///
/// # Errors
/// The write or the encoding failed.
pub fn write_line<W: Write, T: Serialize>(mut out: W, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Reads one JSON line of at most `limit` bytes (`Ok(None)` at end of stream).
///
/// # Errors
/// Reading failed, or the line is not valid JSON for `T` (`InvalidData`).
pub fn read_line<R: io::Read, T: for<'de> Deserialize<'de>>(
    input: R,
    limit: u64,
) -> io::Result<Option<T>> {
    let mut reader = BufReader::new(io::Read::take(input, limit));
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(line.trim_end())
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Sends `request` to rootd at `path` and returns its response; `timeout` bounds the wait
/// for the answer (`None`: no bound, for `wait`).
///
/// # Errors
/// Every [`ClientError`].
pub fn send(
    path: &Path,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(timeout)?;
    write_line(&stream, request)?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(ClientError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "rootd closed the connection without answering",
        )));
    }
    Ok(serde_json::from_str(line.trim_end())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(
        value: &T,
    ) -> String {
        let mut buf = Vec::new();
        write_line(&mut buf, value).unwrap();
        assert_eq!(buf.last(), Some(&b'\n'));
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
        let back: T = read_line(&buf[..], MAX_REQUEST).unwrap().unwrap();
        assert_eq!(&back, value);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn every_request_round_trips() {
        let requests = [
            Request::Info,
            Request::Create {
                config: "name = \"a\"\nimage = \"x\"\n".into(),
                path: Some("/etc/mica/a.toml".into()),
            },
            Request::Start { name: "a".into() },
            Request::Stop { name: "a".into() },
            Request::List,
            Request::Console {
                name: "a".into(),
                offset: 7,
            },
            Request::Delete { name: "a".into() },
            Request::Wait {
                name: "a".into(),
                timeout_ms: Some(1500),
            },
            Request::Log {
                text: "hi \"there\"".into(),
            },
        ];
        for request in &requests {
            round_trip(request);
        }
        assert_eq!(
            round_trip(&Request::Start {
                name: "hello".into()
            }),
            "{\"request\":\"start\",\"name\":\"hello\"}\n"
        );
    }

    #[test]
    fn every_response_round_trips() {
        let summary = PartitionSummary {
            id: 2,
            name: "hello".into(),
            state: PartitionState::Stopped,
            memory: 4 << 20,
            reason: Some(StopReason::Exited { status: 0 }),
            console_bytes: 12,
        };
        let responses = [
            Response::Done,
            Response::Info(InfoReply {
                version: "0.1".into(),
                build: 1,
                backend: "AMD SVM".into(),
                features: vec!["nested paging".into()],
                pool_total: 64 << 20,
                pool_free: 60 << 20,
                partitions_alive: 2,
                max_partitions: 64,
                protected: vec![Range {
                    start: 0x100_0000,
                    end: 0x200_0000,
                }],
                partitions: vec![summary.clone()],
            }),
            Response::Created {
                name: "hello".into(),
                id: 2,
            },
            Response::List {
                partitions: vec![summary.clone()],
            },
            Response::Console {
                data: "GUEST HELLO\n".into(),
                offset: 0,
                next_offset: 12,
                state: PartitionState::Running,
            },
            Response::Stopped { partition: summary },
            Response::Error {
                message: "No partition named \"x\"".into(),
            },
        ];
        for response in &responses {
            round_trip(response);
        }
    }

    #[test]
    fn malformed_lines_are_invalid_data() {
        for bad in [
            &b"{\"request\":\"reboot\"}\n"[..],
            b"{\"request\":\"start\"}\n",
            b"{\"request\":\"start\",\"name\":\"a\",\"extra\":1}\n",
            b"not json\n",
        ] {
            let error = read_line::<_, Request>(bad, MAX_REQUEST).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        }
        assert!(
            read_line::<_, Request>(&b""[..], MAX_REQUEST)
                .unwrap()
                .is_none()
        );
        // Over the limit: the line is cut and does not parse.
        let long = format!("{{\"request\":\"log\",\"text\":\"{}\"}}\n", "x".repeat(100));
        assert!(read_line::<_, Request>(long.as_bytes(), 50).is_err());
    }

    #[test]
    fn socket_path_precedence() {
        assert_eq!(
            socket_path(Some(Path::new("/tmp/x.sock"))),
            PathBuf::from("/tmp/x.sock")
        );
    }
}
