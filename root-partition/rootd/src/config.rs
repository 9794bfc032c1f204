//! A child partition's TOML configuration:
//!
//! ```toml
//! name = "hello"                                # required, [a-z0-9_-]{1,32}
//! image = "/lib/mica/guests/test_guest.elf"     # required; relative to this file's folder
//! memory = "4M"                                 # "4M", "64M", "1G" or bytes; 2 MiB multiple, >= 4 MiB
//! args = "hello"                                # default ""
//! vcpus = 1                                     # default 1; only 1 is supported
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// 1 MiB.
const MIB: u64 = 1 << 20;
/// Partition RAM is a multiple of this (the guest loader maps 2 MiB pages).
pub const MEMORY_ALIGN: u64 = 2 * MIB;
/// The least partition RAM (the guest loader's minimum).
pub const MIN_MEMORY: u64 = 4 * MIB;
/// The longest partition name.
pub const NAME_MAX: usize = 32;

/// A checked partition configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionConfig {
    /// Unique name.
    pub name: String,
    /// The guest image (absolute, or relative to rootd's working directory if the TOML
    /// came without a path).
    pub image: PathBuf,
    /// RAM in bytes.
    pub memory: u64,
    /// The guest's argument string.
    pub args: String,
    /// Virtual processors (always 1 today).
    pub vcpus: u32,
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not valid TOML, a missing or unknown key, or a value of the wrong type. The text is
    /// the TOML parser's (with line and column).
    #[error("Invalid partition config: {0}")]
    Toml(String),
    /// The name breaks the naming rule.
    #[error("Invalid name {0:?}: use 1 to 32 of a-z, 0-9, '_' and '-'")]
    Name(String),
    /// The memory size does not parse.
    #[error("Invalid memory size {0:?}: use e.g. \"4M\", \"64M\", \"1G\" or a number of bytes")]
    MemorySyntax(String),
    /// The memory size is not a multiple of 2 MiB or below 4 MiB.
    #[error("Memory size of {0} bytes must be a multiple of 2 MiB and at least 4 MiB")]
    MemorySize(u64),
    /// More than one vCPU was asked for.
    #[error("vcpus = {0} is not supported: child partitions have exactly 1 vCPU for now")]
    Vcpus(u32),
    /// The image path is empty.
    #[error("The image path is empty")]
    EmptyImage,
}

/// `memory` as written: a string with a unit or a plain number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MemoryValue {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    image: String,
    memory: MemoryValue,
    #[serde(default)]
    args: String,
    #[serde(default = "one")]
    vcpus: u32,
}

const fn one() -> u32 {
    1
}

impl PartitionConfig {
    /// Parses and checks `text`; a relative `image` is taken relative to `base_dir` (the
    /// folder of the TOML file) when given.
    ///
    /// # Errors
    /// Every [`ConfigError`].
    pub fn parse(text: &str, base_dir: Option<&Path>) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        check_name(&raw.name)?;
        let memory = match raw.memory {
            MemoryValue::Bytes(bytes) => bytes,
            MemoryValue::Text(text) => parse_memory(&text)?,
        };
        if memory < MIN_MEMORY || !memory.is_multiple_of(MEMORY_ALIGN) {
            return Err(ConfigError::MemorySize(memory));
        }
        if raw.vcpus != 1 {
            return Err(ConfigError::Vcpus(raw.vcpus));
        }
        if raw.image.is_empty() {
            return Err(ConfigError::EmptyImage);
        }
        let image = Path::new(&raw.image);
        let image = match base_dir {
            Some(dir) if image.is_relative() => dir.join(image),
            _ => image.to_path_buf(),
        };
        Ok(Self {
            name: raw.name,
            image,
            memory,
            args: raw.args,
            vcpus: raw.vcpus,
        })
    }
}

/// Checks a partition name: 1 to [`NAME_MAX`] of `a-z`, `0-9`, `_`, `-`.
///
/// # Errors
/// [`ConfigError::Name`].
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    let ok = (1..=NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Name(name.to_owned()))
    }
}

/// Parses "4M", "64M", "1G", "512K" (binary units, optional "iB"/"B" suffix) or a plain
/// number of bytes.
///
/// # Errors
/// [`ConfigError::MemorySyntax`].
pub fn parse_memory(text: &str) -> Result<u64, ConfigError> {
    let error = || ConfigError::MemorySyntax(text.to_owned());
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let without_b = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (digits, shift) = match without_b.as_bytes().last() {
        Some(b'K') => (&without_b[..without_b.len() - 1], 10),
        Some(b'M') => (&without_b[..without_b.len() - 1], 20),
        Some(b'G') => (&without_b[..without_b.len() - 1], 30),
        _ => (without_b, 0),
    };
    let digits = digits.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error());
    }
    let value: u64 = digits.parse().map_err(|_| error())?;
    value.checked_mul(1 << shift).ok_or_else(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "hello"
image = "guests/test_guest.elf"
memory = "4M"
args = "hello"
"#;

    #[test]
    fn a_good_config_with_defaults_and_relative_image() {
        let config = PartitionConfig::parse(GOOD, Some(Path::new("/etc/mica"))).unwrap();
        assert_eq!(
            config,
            PartitionConfig {
                name: "hello".into(),
                image: PathBuf::from("/etc/mica/guests/test_guest.elf"),
                memory: 4 * MIB,
                args: "hello".into(),
                vcpus: 1,
            }
        );
        let minimal = "name = \"a\"\nimage = \"/x.elf\"\nmemory = 6291456\n";
        let config = PartitionConfig::parse(minimal, Some(Path::new("/etc"))).unwrap();
        assert_eq!(config.image, PathBuf::from("/x.elf"));
        assert_eq!(config.memory, 6 * MIB);
        assert_eq!(config.args, "");
        assert_eq!(config.vcpus, 1);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("4M"), Ok(4 * MIB));
        assert_eq!(parse_memory("64M"), Ok(64 * MIB));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("2GiB"), Ok(2 << 30));
        assert_eq!(parse_memory("512k"), Ok(512 << 10));
        assert_eq!(parse_memory("4194304"), Ok(4 * MIB));
        for bad in [
            "",
            "M",
            "4X",
            "-4M",
            "4.5M",
            "99999999999999999999G",
            "4 M M",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        for good in ["a", "hello", "web-01", "x_y", &"a".repeat(32)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Hello", "a b", "a.b", "é", &"a".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    fn error_of(text: &str) -> ConfigError {
        PartitionConfig::parse(text, None).unwrap_err()
    }

    #[test]
    fn every_error() {
        // TOML syntax, with the line.
        let ConfigError::Toml(message) = error_of("name = \"a\"\nimage = \n") else {
            panic!("expected a TOML error");
        };
        assert!(message.contains("line 2"), "{message}");
        // Unknown key.
        let ConfigError::Toml(message) =
            error_of("name = \"a\"\nimage = \"/x\"\nmemory = \"4M\"\ncolour = 1\n")
        else {
            panic!("expected a TOML error");
        };
        assert!(message.contains("colour"), "{message}");
        // Missing key.
        let ConfigError::Toml(message) = error_of("name = \"a\"\nmemory = \"4M\"\n") else {
            panic!("expected a TOML error");
        };
        assert!(message.contains("image"), "{message}");
        assert_eq!(
            error_of("name = \"A\"\nimage = \"/x\"\nmemory = \"4M\"\n"),
            ConfigError::Name("A".into())
        );
        assert_eq!(
            error_of("name = \"a\"\nimage = \"/x\"\nmemory = \"lots\"\n"),
            ConfigError::MemorySyntax("lots".into())
        );
        assert_eq!(
            error_of("name = \"a\"\nimage = \"/x\"\nmemory = \"2M\"\n"),
            ConfigError::MemorySize(2 * MIB)
        );
        assert_eq!(
            error_of("name = \"a\"\nimage = \"/x\"\nmemory = \"5M\"\n"),
            ConfigError::MemorySize(5 * MIB)
        );
        assert_eq!(
            error_of("name = \"a\"\nimage = \"/x\"\nmemory = \"4M\"\nvcpus = 2\n"),
            ConfigError::Vcpus(2)
        );
        assert_eq!(
            error_of("name = \"a\"\nimage = \"\"\nmemory = \"4M\"\n"),
            ConfigError::EmptyImage
        );
        assert!(
            error_of("name = \"a\"\nimage = \"/x\"\nmemory = \"4M\"\nvcpus = 2\n")
                .to_string()
                .contains("exactly 1 vCPU")
        );
    }

    #[test]
    fn the_initramfs_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../initramfs/etc/mica");
        for (file, name, args) in [
            ("hello.toml", "hello", "hello"),
            ("faulty.toml", "faulty", "touch-outside"),
            ("spinner.toml", "spinner", "spin"),
        ] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let config = PartitionConfig::parse(&text, Some(&dir)).unwrap();
            assert_eq!((config.name.as_str(), config.args.as_str()), (name, args));
            assert_eq!(
                config.image,
                PathBuf::from("/lib/mica/guests/test_guest.elf")
            );
            assert_eq!(config.memory, MIN_MEMORY);
        }
    }
}
