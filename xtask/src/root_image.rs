//! The root partition's boot files: a stock Debian kernel (`vmlinuz`) and an initramfs
//! (`initramfs.cpio`: busybox, its applet links, a few device nodes, then Mica's overlay and
//! extra files), built from Debian packages without installing anything on the build machine.
//!
//! How: `apt-cache depends linux-image-amd64` names the current kernel package; `apt-cache
//! policy` gives the candidate versions; `apt-get download` fetches the `.deb`s into
//! [`cache_dir()`]`/debs`; `dpkg-deb --fsys-tarfile | tar -x` pulls out only `./boot/vmlinuz-*`
//! and `./bin/busybox` into `cache_dir()/extracted/<package>_<version>/`. A later build with
//! the same candidate versions downloads and extracts nothing. If apt fails (stale or missing
//! package lists), `apt-get update` runs once (as root or through `sudo -n`) and everything is
//! resolved again.
//!
//! The initramfs is an uncompressed newc cpio written here ([`Archive`]): Linux accepts it
//! as is, and nothing has to be decompressed under emulation. The output is deterministic
//! (sorted entries, inode numbers by position, mtime 0, owner 0:0).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::process::{self, Error, Result, bail, io_err};

/// What goes into the initramfs besides busybox.
#[derive(Debug, Clone, Default)]
pub struct RootImageSpec {
    /// Directory copied verbatim into the initramfs root (a file with any executable bit
    /// becomes 0755, other files 0644, directories 0755, symbolic links stay links). E.g.
    /// `root-partition/initramfs/` holding `init`, scripts, `etc/`.
    pub overlay: Option<PathBuf>,
    /// Extra files: (host path, absolute path inside the initramfs, permission bits). They
    /// are added after the overlay and replace an overlay file at the same path.
    pub files: Vec<(PathBuf, String, u32)>,
}

/// The built boot files of the root partition.
#[derive(Debug, Clone)]
pub struct RootImage {
    /// `out_dir/vmlinuz`: the Debian kernel (bzImage).
    pub kernel: PathBuf,
    /// `out_dir/initramfs.cpio`: uncompressed newc cpio.
    pub initramfs: PathBuf,
    /// The Debian package the kernel came from, e.g. `linux-image-6.1.0-56-amd64`.
    pub kernel_package: String,
    /// That package's Debian version, e.g. `6.1.192-2`.
    pub kernel_version: String,
}

/// The metapackage that always depends on Debian's current kernel image.
const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
/// The statically linked busybox (runs on the build host and in the root partition).
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Where busybox is inside its package and inside the initramfs.
const BUSYBOX_PATH: &str = "/bin/busybox";

/// Directories every root initramfs has, with their permission bits.
const BASE_DIRS: &[(&str, u32)] = &[
    ("/bin", 0o755),
    ("/dev", 0o755),
    ("/etc", 0o755),
    ("/lib", 0o755),
    ("/proc", 0o755),
    ("/root", 0o700),
    ("/run", 0o755),
    ("/sbin", 0o755),
    ("/sys", 0o755),
    ("/tmp", 0o1777),
    ("/usr", 0o755),
    ("/usr/bin", 0o755),
    ("/usr/sbin", 0o755),
];

/// Character devices present before devtmpfs is mounted, so the kernel can open its initial
/// console: (path, permission bits, major, minor).
const BASE_CHAR_DEVICES: &[(&str, u32, u32, u32)] = &[
    ("/dev/console", 0o600, 5, 1),
    ("/dev/null", 0o666, 1, 3),
    ("/dev/ttyS1", 0o600, 4, 65),
];

/// The download/extraction cache: `$MICA_CACHE`, else `$XDG_CACHE_HOME/mica`, else
/// `$HOME/.cache/mica`, else `target/mica-cache` in the workspace. Empty variables count as
/// unset.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(|name| std::env::var_os(name))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let set = |name: &str| {
        var(name)
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = set("MICA_CACHE") {
        dir
    } else if let Some(dir) = set("XDG_CACHE_HOME") {
        dir.join("mica")
    } else if let Some(home) = set("HOME") {
        home.join(".cache").join("mica")
    } else {
        crate::workspace::target_dir().join("mica-cache")
    }
}

/// Downloads (cached) and extracts the kernel and busybox, then writes `out_dir/vmlinuz` and
/// `out_dir/initramfs.cpio` (uncompressed newc cpio) and prints their sizes.
pub fn build(spec: &RootImageSpec, out_dir: &Path) -> Result<RootImage> {
    let started = Instant::now();
    ensure_tools()?;
    let cache = cache_dir();
    let (kernel, busybox) = with_fresh_lists(|| {
        let kernel_package = resolve_kernel_package()?;
        // One `apt-cache` run for both (each run takes about half a second).
        let versions = candidate_versions(&[&kernel_package, BUSYBOX_PACKAGE])?;
        let [kernel_version, busybox_version] = versions.as_slice() else {
            return Err(FetchError::Other(Error("Expected two versions".into())));
        };
        let kernel = fetch(&cache, &kernel_package, kernel_version, "./boot/vmlinuz-*")?;
        let busybox = fetch(
            &cache,
            BUSYBOX_PACKAGE,
            busybox_version,
            &format!(".{BUSYBOX_PATH}"),
        )?;
        Ok((kernel, busybox))
    })?;
    if kernel.cached && busybox.cached {
        eprintln!(
            "note: root image: using cached {} {} and {} {} from {}",
            kernel.package,
            kernel.version,
            busybox.package,
            busybox.version,
            cache.display()
        );
    }

    fs::create_dir_all(out_dir).map_err(io_err("create", out_dir))?;
    let vmlinuz = find_vmlinuz(&kernel.dir)?;
    let kernel_out = out_dir.join("vmlinuz");
    copy_atomically(&vmlinuz, &kernel_out)?;

    let busybox_host = host_path_of(&busybox.dir, BUSYBOX_PATH);
    let busybox_bytes = fs::read(&busybox_host).map_err(io_err("read", &busybox_host))?;
    let applets = busybox_applets(&busybox_host)?;
    let archive = assemble(busybox_bytes, &applets, spec)?;
    let initramfs = out_dir.join("initramfs.cpio");
    let bytes = archive.to_newc().map_err(|err| {
        Error(format!(
            "Cannot write the initramfs {}: {err}",
            initramfs.display()
        ))
    })?;
    write_atomically(&initramfs, &bytes)?;

    let kernel_size = fs::metadata(&kernel_out)
        .map_err(io_err("read", &kernel_out))?
        .len();
    eprintln!(
        "root image: {} ({}, {} {}), {} ({}, {} entries) in {:.1} s",
        kernel_out.display(),
        megabytes(kernel_size),
        kernel.package,
        kernel.version,
        initramfs.display(),
        megabytes(u64::try_from(bytes.len()).unwrap_or(u64::MAX)),
        archive.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(RootImage {
        kernel: kernel_out,
        initramfs,
        kernel_package: kernel.package,
        kernel_version: kernel.version,
    })
}

fn megabytes(bytes: u64) -> String {
    // A size for people to read: precision loss in the conversion does not matter.
    let mb = bytes as f64 / (1024.0 * 1024.0);
    format!("{mb:.1} MiB")
}

/// `root` joined with an absolute path inside a package or the initramfs.
fn host_path_of(root: &Path, absolute: &str) -> PathBuf {
    root.join(absolute.trim_start_matches('/'))
}

// ---------------------------------------------------------------------------------------------
// Debian packages: resolution, download, extraction.

/// The build-host tools this module runs (present on any Debian).
const REQUIRED_TOOLS: &[&str] = &["apt-get", "apt-cache", "dpkg-deb", "tar"];

fn ensure_tools() -> Result<()> {
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .copied()
        .filter(|tool| !process::succeeds(Command::new(tool).arg("--version")))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        bail!(
            "The root image is built from Debian packages and needs {}; not found: {}",
            REQUIRED_TOOLS.join(", "),
            missing.join(", ")
        )
    }
}

/// A failure while building the root image, split by whether refreshing apt's package lists
/// could cure it.
#[derive(Debug)]
enum FetchError {
    /// apt could not resolve or download a package (the lists may be stale or missing).
    Apt(Error),
    /// Anything else (local files, extraction).
    Other(Error),
}

impl From<Error> for FetchError {
    fn from(err: Error) -> Self {
        Self::Other(err)
    }
}

/// Whether this process already ran `apt-get update` for the root image.
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Runs `attempt`; if apt failed in it, refreshes the package lists once and runs it again.
fn with_fresh_lists<T>(mut attempt: impl FnMut() -> Result<T, FetchError>) -> Result<T> {
    match attempt() {
        Ok(value) => return Ok(value),
        Err(FetchError::Other(err)) => return Err(err),
        Err(FetchError::Apt(err)) if APT_UPDATED.load(Ordering::SeqCst) => {
            return Err(apt_hint(&err));
        }
        Err(FetchError::Apt(err)) => {
            eprintln!("note: {err}\nnote: refreshing the package lists and trying again");
        }
    }
    apt_update().map_err(|err| {
        Error(format!(
            "{err}\nThe root image needs Debian's package lists; run by hand: \
             sudo apt-get update"
        ))
    })?;
    match attempt() {
        Ok(value) => Ok(value),
        Err(FetchError::Apt(err)) => Err(apt_hint(&err)),
        Err(FetchError::Other(err)) => Err(err),
    }
}

fn apt_hint(err: &Error) -> Error {
    Error(format!(
        "{err}\nGetting the root partition's Debian packages ({KERNEL_METAPACKAGE}, \
         {BUSYBOX_PACKAGE}) failed even with fresh package lists: check the network and \
         /etc/apt/sources.list*, then re-run the command above by hand to see apt's answer"
    ))
}

fn is_root() -> bool {
    process::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

/// `apt-get update`, as root or through `sudo -n`; at most once per process.
fn apt_update() -> Result<()> {
    if APT_UPDATED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut command = if is_root() {
        Command::new("apt-get")
    } else if process::succeeds(Command::new("sudo").args(["-n", "true"])) {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "apt-get"]);
        sudo
    } else {
        bail!("Refreshing the package lists needs root (or passwordless sudo)");
    };
    command.arg("update");
    process::run(&mut command)
}

/// `apt-get` with the sandbox user switched off when running as root (apt's `_apt` user
/// cannot write into the cache directory, which only costs a warning, but a noisy one).
fn apt_get() -> Command {
    let mut command = Command::new("apt-get");
    if is_root() {
        command.args(["-o", "APT::Sandbox::User=root"]);
    }
    command
}

/// The kernel image package `linux-image-amd64` depends on (no network: apt's lists).
fn resolve_kernel_package() -> Result<String, FetchError> {
    let text = process::output(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))
        .map_err(FetchError::Apt)?;
    parse_kernel_dependency(&text).ok_or_else(|| {
        FetchError::Apt(Error(format!(
            "`apt-cache depends {KERNEL_METAPACKAGE}` names no linux-image package:\n{text}"
        )))
    })
}

/// The first plain `Depends: linux-image-...` line of `apt-cache depends` output (virtual
/// packages in `<...>` are skipped).
fn parse_kernel_dependency(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.trim().trim_start_matches('|').strip_prefix("Depends:"))
        .map(str::trim)
        .find(|name| name.starts_with("linux-image-") && is_package_name(name))
        .map(str::to_owned)
}

/// A Debian package name (policy 5.6.1: lower-case letters, digits, `+ - .`, at least two
/// characters, starting with a letter or digit).
fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// The `Candidate:` version of `package` in `apt-cache policy PACKAGE...` output (one
/// section per package, headed `name:` at the start of a line); `None` if the package is
/// missing or its candidate is `(none)`.
fn parse_candidate(text: &str, package: &str) -> Option<String> {
    let heading = format!("{package}:");
    let version = text
        .lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .take_while(|line| line.starts_with(char::is_whitespace))
        .find_map(|line| line.trim().strip_prefix("Candidate:"))?
        .trim();
    is_version(version).then(|| version.to_owned())
}

/// A Debian version (policy 5.6.12: `[epoch:]upstream[-revision]` from a small alphabet).
fn is_version(version: &str) -> bool {
    !version.is_empty()
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-~:".contains(c))
}

/// The version as it appears in `.deb` file names (apt writes the epoch colon as `%3a`).
fn file_version(version: &str) -> String {
    version.replace(':', "%3a")
}

/// The candidate versions of `packages`, in order.
fn candidate_versions(packages: &[&str]) -> Result<Vec<String>, FetchError> {
    let text = process::output(Command::new("apt-cache").arg("policy").args(packages))
        .map_err(FetchError::Apt)?;
    packages
        .iter()
        .map(|package| {
            parse_candidate(&text, package).ok_or_else(|| {
                FetchError::Apt(Error(format!(
                    "apt knows no installable version of {package}"
                )))
            })
        })
        .collect()
}

/// An unpacked package in the cache.
#[derive(Debug)]
struct Extracted {
    package: String,
    version: String,
    /// `cache/extracted/<package>_<version>/`: the extracted members, paths as in the package.
    dir: PathBuf,
    /// Nothing was downloaded or extracted.
    cached: bool,
}

/// `package` at `version`, extracted (only the members matching `pattern`, a tar wildcard
/// such as `./boot/vmlinuz-*`), downloading the `.deb` if it is not cached.
fn fetch(
    cache: &Path,
    package: &str,
    version: &str,
    pattern: &str,
) -> Result<Extracted, FetchError> {
    let version = version.to_owned();
    let key = format!("{package}_{}", file_version(&version));
    let extracted = cache.join("extracted");
    let dir = extracted.join(&key);
    if matches_member(&dir, pattern)? {
        return Ok(Extracted {
            package: package.to_owned(),
            version,
            dir,
            cached: true,
        });
    }
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).map_err(io_err("create", &debs))?;
    let deb = match cached_deb(&debs, &key)? {
        Some(deb) => {
            eprintln!("note: using cached {}", deb.display());
            deb
        }
        None => download(&debs, package, &version)?,
    };
    fs::create_dir_all(&extracted).map_err(io_err("create", &extracted))?;
    let staging = extracted.join(format!("{key}.partial-{}", std::process::id()));
    remove_dir_if_present(&staging)?;
    fs::create_dir_all(&staging).map_err(io_err("create", &staging))?;
    extract(&deb, pattern, &staging)?;
    remove_dir_if_present(&dir)?;
    fs::rename(&staging, &dir).map_err(io_err("rename into place", &dir))?;
    Ok(Extracted {
        package: package.to_owned(),
        version,
        dir,
        cached: false,
    })
}

/// Whether `dir` holds a file matching `pattern` (`./a/b` or `./a/prefix-*`).
fn matches_member(dir: &Path, pattern: &str) -> Result<bool> {
    let relative = pattern.trim_start_matches("./");
    match relative.strip_suffix('*') {
        None => Ok(dir.join(relative).is_file()),
        Some(prefix) => {
            let (parent, start) = match prefix.rsplit_once('/') {
                Some((parent, start)) => (dir.join(parent), start),
                None => (dir.to_path_buf(), prefix),
            };
            Ok(files_starting_with(&parent, start)?.next().is_some())
        }
    }
}

/// Regular files in `dir` whose names start with `prefix` (none if `dir` is missing).
fn files_starting_with(dir: &Path, prefix: &str) -> Result<impl Iterator<Item = PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries.collect::<Result<Vec<_>, _>>(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err),
    }
    .map_err(io_err("read", dir))?;
    let prefix = prefix.to_owned();
    let mut found: Vec<PathBuf> = entries
        .into_iter()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    Ok(found.into_iter())
}

/// `debs/<package>_<version>_<arch>.deb` if present.
fn cached_deb(debs: &Path, key: &str) -> Result<Option<PathBuf>> {
    Ok(files_starting_with(debs, &format!("{key}_"))?
        .find(|p| p.extension().is_some_and(|e| e == "deb")))
}

/// `apt-get download package=version` into a private folder of `debs`, then moved into
/// `debs` (so an interrupted download never looks complete); older `.deb`s of the same
/// package are removed.
fn download(debs: &Path, package: &str, version: &str) -> Result<PathBuf, FetchError> {
    let partial = debs.join(format!("partial-{}", std::process::id()));
    remove_dir_if_present(&partial)?;
    fs::create_dir_all(&partial).map_err(io_err("create", &partial))?;
    let mut command = apt_get();
    command
        .arg("download")
        .arg(format!("{package}={version}"))
        .current_dir(&partial);
    process::run(&mut command).map_err(FetchError::Apt)?;
    let key = format!("{package}_{}", file_version(version));
    let Some(fetched) = cached_deb(&partial, &key)? else {
        return Err(FetchError::Other(Error(format!(
            "`{}` succeeded but left no {key}_*.deb in {}",
            process::display(&command),
            partial.display()
        ))));
    };
    for old in files_starting_with(debs, &format!("{package}_"))? {
        fs::remove_file(&old).map_err(io_err("remove", &old))?;
    }
    let name = fetched.file_name().map(PathBuf::from).unwrap_or_default();
    let deb = debs.join(name);
    fs::rename(&fetched, &deb).map_err(io_err("rename into place", &deb))?;
    remove_dir_if_present(&partial)?;
    Ok(deb)
}

fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_err("remove", dir)(err)),
    }
}

/// `dpkg-deb --fsys-tarfile DEB | tar -x -C DIR --wildcards PATTERN`: only the wanted
/// members, not the whole package (the kernel's holds ~400 MB of modules).
fn extract(deb: &Path, pattern: &str, dir: &Path) -> Result<()> {
    let mut dpkg = Command::new("dpkg-deb");
    dpkg.arg("--fsys-tarfile").arg(deb);
    let mut tar = Command::new("tar");
    tar.args(["-x", "--no-same-owner", "-C"])
        .arg(dir)
        .args(["--wildcards", pattern]);
    let line = format!("{} | {}", process::display(&dpkg), process::display(&tar));
    eprintln!("==> {line}");
    let mut producer = dpkg
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|err| Error(format!("Cannot start `{line}`: {err}")))?;
    let Some(pipe) = producer.stdout.take() else {
        let _ = producer.kill();
        let _ = producer.wait();
        bail!("Cannot start `{line}`: no pipe from dpkg-deb");
    };
    let consumer = tar.stdin(pipe).status();
    // tar may stop reading early (on an error); dpkg-deb then dies of SIGPIPE, which is why
    // tar's status is judged first.
    let producer = producer.wait();
    match (consumer, producer) {
        (Err(err), _) => bail!("Cannot start `{line}`: {err}"),
        (Ok(status), _) if !status.success() => bail!("`{line}` failed (tar: {status})"),
        (_, Err(err)) => bail!("`{line}` failed (dpkg-deb: {err})"),
        (_, Ok(status)) if !status.success() => bail!("`{line}` failed (dpkg-deb: {status})"),
        _ => Ok(()),
    }
}

/// The one `boot/vmlinuz-*` of an extracted kernel package.
fn find_vmlinuz(dir: &Path) -> Result<PathBuf> {
    let boot = dir.join("boot");
    let found: Vec<PathBuf> = files_starting_with(&boot, "vmlinuz-")?.collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("No vmlinuz-* in {}", boot.display()),
        _ => bail!(
            "More than one vmlinuz-* in {}; remove the folder to extract it again",
            boot.display()
        ),
    }
}

/// The applets of `busybox --list-full` (paths like `bin/sh`), as absolute paths.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let text = process::output(Command::new(busybox).arg("--list-full"))?;
    Ok(parse_applets(&text))
}

fn parse_applets(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| format!("/{line}"))
        .collect()
}

fn copy_atomically(from: &Path, to: &Path) -> Result<()> {
    let staging = staging_path(to);
    fs::copy(from, &staging).map_err(io_err("copy to", &staging))?;
    fs::rename(&staging, to).map_err(io_err("rename into place", to))
}

fn write_atomically(to: &Path, bytes: &[u8]) -> Result<()> {
    let staging = staging_path(to);
    fs::write(&staging, bytes).map_err(io_err("write", &staging))?;
    fs::rename(&staging, to).map_err(io_err("rename into place", to))
}

fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}

// ---------------------------------------------------------------------------------------------
// The initramfs contents.

/// The whole initramfs: base directories and device nodes, busybox and its applet links
/// (except where the overlay or an extra file has the same path), the overlay, the extras.
fn assemble(busybox: Vec<u8>, applets: &[String], spec: &RootImageSpec) -> Result<Archive> {
    let mut archive = Archive::default();
    for &(path, mode) in BASE_DIRS {
        archive.add_dir(path, mode)?;
    }
    for &(path, mode, major, minor) in BASE_CHAR_DEVICES {
        archive.add_char_device(path, mode, major, minor)?;
    }
    archive.add_file(BUSYBOX_PATH, 0o755, busybox)?;
    if let Some(overlay) = &spec.overlay {
        add_overlay(&mut archive, overlay, "")?;
    }
    for (host, path, mode) in &spec.files {
        let data = fs::read(host).map_err(io_err("read", host))?;
        archive.add_file(path, *mode, data)?;
    }
    for applet in applets {
        if applet != BUSYBOX_PATH && !archive.contains(applet) {
            archive.add_symlink(applet, BUSYBOX_PATH)?;
        }
    }
    Ok(archive)
}

/// Adds the tree under `host` at `/prefix...`, in name order.
fn add_overlay(archive: &mut Archive, host: &Path, prefix: &str) -> Result<()> {
    let mut entries = fs::read_dir(host)
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .map_err(io_err("read the overlay folder", host))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let host_path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            bail!("Overlay file name is not UTF-8: {}", host_path.display());
        };
        let path = format!("{prefix}/{name}");
        let meta = fs::symlink_metadata(&host_path).map_err(io_err("read", &host_path))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            archive.add_dir(&path, 0o755)?;
            add_overlay(archive, &host_path, &path)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&host_path).map_err(io_err("read the link", &host_path))?;
            let Some(target) = target.to_str() else {
                bail!("Overlay link target is not UTF-8: {}", host_path.display());
            };
            archive.add_symlink(&path, target)?;
        } else if kind.is_file() {
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            let data = fs::read(&host_path).map_err(io_err("read", &host_path))?;
            archive.add_file(&path, mode, data)?;
        } else {
            bail!(
                "Overlay entry {} is neither a file, a folder nor a link",
                host_path.display()
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// newc cpio.

/// Why an entry cannot go into the initramfs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// The path does not start with `/`.
    #[error("Initramfs path {0:?} is not absolute")]
    NotAbsolute(String),
    /// An empty, `.` or `..` component, a trailing `/`, or a NUL byte.
    #[error("Initramfs path {0:?} is not a plain absolute path (empty, `.` or `..` part, or NUL)")]
    NotPlain(String),
    /// `/` itself.
    #[error("The initramfs root `/` cannot be an entry")]
    Root,
    /// Permission bits beyond `0o7777`.
    #[error("Mode {mode:#o} of initramfs path {path:?} has bits beyond 0o7777")]
    BadMode {
        /// The path.
        path: String,
        /// The mode given.
        mode: u32,
    },
    /// A directory where a non-directory should go, or the other way round.
    #[error("Initramfs path {0:?} is both a folder and something else")]
    Conflict(String),
    /// A parent of the path is not a directory.
    #[error("Parent {parent:?} of initramfs path {path:?} is not a folder")]
    ParentNotDir {
        /// The path.
        path: String,
        /// Its parent that is a file, link or device.
        parent: String,
    },
    /// File data (or the name) does not fit a newc header field.
    #[error("Initramfs entry {0:?} is too large for a newc cpio archive")]
    TooLarge(String),
}

impl From<ArchiveError> for Error {
    fn from(err: ArchiveError) -> Self {
        Self(err.to_string())
    }
}

/// The kind and content of one archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A directory.
    Dir,
    /// A regular file with its bytes.
    File(Vec<u8>),
    /// A symbolic link with its target.
    Symlink(String),
    /// A character device `major:minor`.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

impl Node {
    /// The file-type bits of `st_mode`.
    fn type_bits(&self) -> u32 {
        match self {
            Self::Dir => 0o040_000,
            Self::File(_) => 0o100_000,
            Self::Symlink(_) => 0o120_000,
            Self::CharDevice { .. } => 0o020_000,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Self::File(bytes) => bytes,
            Self::Symlink(target) => target.as_bytes(),
            Self::Dir | Self::CharDevice { .. } => &[],
        }
    }
}

/// An in-memory initramfs: entries by path (relative names, `bin/sh`), written as a newc
/// cpio in path order, which puts every folder before its contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Archive {
    entries: BTreeMap<String, (u32, Node)>,
}

/// newc magic.
const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Magic plus 13 eight-digit hex fields.
const NEWC_HEADER_LEN: usize = 6 + 13 * 8;
const _: () = assert!(NEWC_HEADER_LEN == 110);
/// Name of the entry that ends a cpio archive.
const TRAILER: &str = "TRAILER!!!";
/// The archive is padded with zeros to a multiple of this (cpio's block size).
const BLOCK: usize = 512;

/// The archive name of an absolute initramfs path (`/usr/bin/x` → `usr/bin/x`).
pub(crate) fn archive_name(path: &str) -> Result<&str, ArchiveError> {
    let Some(relative) = path.strip_prefix('/') else {
        return Err(ArchiveError::NotAbsolute(path.to_owned()));
    };
    if relative.is_empty() {
        return Err(ArchiveError::Root);
    }
    let plain = !relative.contains('\0')
        && relative
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if plain {
        Ok(relative)
    } else {
        Err(ArchiveError::NotPlain(path.to_owned()))
    }
}

impl Archive {
    /// Number of entries (without the trailer).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether an entry exists at the absolute `path`.
    pub(crate) fn contains(&self, path: &str) -> bool {
        archive_name(path).is_ok_and(|name| self.entries.contains_key(name))
    }

    /// Adds a directory (and its missing parents, 0755). An existing directory keeps its mode.
    pub(crate) fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), ArchiveError> {
        self.insert(path, mode, Node::Dir)
    }

    /// Adds (or replaces) a regular file.
    pub(crate) fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        data: Vec<u8>,
    ) -> Result<(), ArchiveError> {
        self.insert(path, mode, Node::File(data))
    }

    /// Adds (or replaces) a symbolic link (mode 0777, as links have).
    pub(crate) fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), ArchiveError> {
        if target.is_empty() || target.contains('\0') {
            return Err(ArchiveError::NotPlain(target.to_owned()));
        }
        self.insert(path, 0o777, Node::Symlink(target.to_owned()))
    }

    /// Adds (or replaces) a character device node.
    pub(crate) fn add_char_device(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), ArchiveError> {
        self.insert(path, mode, Node::CharDevice { major, minor })
    }

    fn insert(&mut self, path: &str, mode: u32, node: Node) -> Result<(), ArchiveError> {
        let name = archive_name(path)?;
        if mode & !0o7777 != 0 {
            return Err(ArchiveError::BadMode {
                path: path.to_owned(),
                mode,
            });
        }
        let fits = u32::try_from(node.data().len()).is_ok()
            && u32::try_from(name.len().saturating_add(1)).is_ok();
        if !fits {
            return Err(ArchiveError::TooLarge(path.to_owned()));
        }
        // Parents: each must be a directory or absent (then created).
        let mut parents = Vec::new();
        for (index, _) in name.match_indices('/') {
            let parent = &name[..index];
            match self.entries.get(parent) {
                Some((_, Node::Dir)) => {}
                Some(_) => {
                    return Err(ArchiveError::ParentNotDir {
                        path: path.to_owned(),
                        parent: format!("/{parent}"),
                    });
                }
                None => parents.push(parent.to_owned()),
            }
        }
        match (self.entries.get(name), &node) {
            (Some((_, Node::Dir)), Node::Dir) => return Ok(()),
            (Some((_, Node::Dir)), _) | (Some(_), Node::Dir) => {
                return Err(ArchiveError::Conflict(path.to_owned()));
            }
            _ => {}
        }
        for parent in parents {
            self.entries.insert(parent, (0o755, Node::Dir));
        }
        self.entries.insert(name.to_owned(), (mode, node));
        Ok(())
    }

    /// The archive as newc cpio bytes: entries in path order with inode numbers 1, 2, ...
    /// in that order, owner 0:0, mtime 0; then the trailer; zero-padded to 512 bytes.
    pub(crate) fn to_newc(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for (index, (name, (mode, node))) in self.entries.iter().enumerate() {
            let ino = index
                .checked_add(1)
                .and_then(|ino| u32::try_from(ino).ok())
                .ok_or_else(|| io::Error::other("too many initramfs entries"))?;
            // A file with nlink >= 2 would be taken for a hard link by Linux's unpacker.
            let nlink = if matches!(node, Node::Dir) { 2 } else { 1 };
            let (rdev_major, rdev_minor) = match node {
                Node::CharDevice { major, minor } => (*major, *minor),
                _ => (0, 0),
            };
            let header = NewcHeader {
                ino,
                mode: node.type_bits() | mode,
                nlink,
                rdev_major,
                rdev_minor,
            };
            write_entry(&mut out, &header, name, node.data())?;
        }
        let trailer = NewcHeader {
            ino: 0,
            mode: 0,
            nlink: 1,
            rdev_major: 0,
            rdev_minor: 0,
        };
        write_entry(&mut out, &trailer, TRAILER, &[])?;
        out.resize(out.len().next_multiple_of(BLOCK), 0);
        Ok(out)
    }
}

/// The header fields that vary between entries (uid, gid, mtime, devmajor/minor and check
/// are always 0).
#[derive(Debug, Clone, Copy)]
struct NewcHeader {
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

fn too_large(what: &str) -> io::Error {
    io::Error::other(format!("{what} does not fit a newc header field"))
}

/// Header, NUL-terminated name padded so header+name is a multiple of 4, data padded to 4.
fn write_entry(out: &mut Vec<u8>, header: &NewcHeader, name: &str, data: &[u8]) -> io::Result<()> {
    let filesize = u32::try_from(data.len()).map_err(|_| too_large(name))?;
    let namesize = name
        .len()
        .checked_add(1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| too_large(name))?;
    let fields = [
        header.ino,
        header.mode,
        0, // uid
        0, // gid
        header.nlink,
        0, // mtime
        filesize,
        0, // devmajor
        0, // devminor
        header.rdev_major,
        header.rdev_minor,
        namesize,
        0, // check
    ];
    out.write_all(NEWC_MAGIC)?;
    for field in fields {
        write!(out, "{field:08X}")?;
    }
    out.write_all(name.as_bytes())?;
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
    out.write_all(data)?;
    out.resize(out.len().next_multiple_of(4), 0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry as read back from newc bytes.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Parsed {
        name: String,
        ino: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u32,
        mtime: u32,
        rdev: (u32, u32),
        data: Vec<u8>,
    }

    /// A strict test reader: checks magic, hex fields, alignment, zero padding, the trailer
    /// and that only zeros follow it up to a 512-byte boundary.
    fn parse_newc(bytes: &[u8]) -> Vec<Parsed> {
        assert_eq!(bytes.len() % BLOCK, 0, "archive is padded to 512 bytes");
        let mut pos = 0;
        let mut entries = Vec::new();
        loop {
            assert_eq!(pos % 4, 0, "header at {pos} is 4-byte aligned");
            let header = &bytes[pos..pos + NEWC_HEADER_LEN];
            assert_eq!(&header[..6], NEWC_MAGIC);
            let field = |i: usize| {
                let text = std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i]).expect("ascii");
                u32::from_str_radix(text, 16).expect("hex field")
            };
            let (namesize, filesize) = (field(11) as usize, field(6) as usize);
            assert_eq!(field(7), 0, "devmajor");
            assert_eq!(field(8), 0, "devminor");
            assert_eq!(field(12), 0, "check");
            let name_start = pos + NEWC_HEADER_LEN;
            let name_end = name_start + namesize;
            assert_eq!(bytes[name_end - 1], 0, "name is NUL-terminated");
            let name = std::str::from_utf8(&bytes[name_start..name_end - 1])
                .expect("utf-8 name")
                .to_owned();
            let data_start = name_end.next_multiple_of(4);
            assert!(bytes[name_end..data_start].iter().all(|&b| b == 0));
            let data_end = data_start + filesize;
            let data = bytes[data_start..data_end].to_vec();
            pos = data_end.next_multiple_of(4);
            assert!(bytes[data_end..pos].iter().all(|&b| b == 0));
            if name == TRAILER {
                assert_eq!(filesize, 0);
                assert!(
                    bytes[pos..].iter().all(|&b| b == 0),
                    "only zeros after trailer"
                );
                return entries;
            }
            entries.push(Parsed {
                name,
                ino: field(0),
                mode: field(1),
                uid: field(2),
                gid: field(3),
                nlink: field(4),
                mtime: field(5),
                rdev: (field(9), field(10)),
                data,
            });
        }
    }

    fn sample() -> Archive {
        let mut archive = Archive::default();
        archive.add_dir("/etc", 0o755).expect("dir");
        // Sizes 0..=5 cover every padding case.
        for size in 0..=5u8 {
            let data: Vec<u8> = (0..size).map(|i| b'a' + i).collect();
            archive
                .add_file(&format!("/etc/f{size}"), 0o644, data)
                .expect("file");
        }
        archive
            .add_file("/init", 0o755, b"#!/bin/sh\n".to_vec())
            .expect("init");
        archive
            .add_symlink("/usr/bin/awk", "/bin/busybox")
            .expect("link");
        archive
            .add_char_device("/dev/console", 0o600, 5, 1)
            .expect("dev");
        archive
    }

    #[test]
    fn newc_round_trip_keeps_names_modes_sizes_and_data() {
        let bytes = sample().to_newc().expect("write");
        let entries = parse_newc(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "etc",
                "etc/f0",
                "etc/f1",
                "etc/f2",
                "etc/f3",
                "etc/f4",
                "etc/f5",
                "init",
                "usr",
                "usr/bin",
                "usr/bin/awk"
            ]
        );
        let get = |name: &str| entries.iter().find(|e| e.name == name).expect(name);
        // Parents created implicitly are 0755 folders.
        assert_eq!(get("dev").mode, 0o040_755);
        assert_eq!(get("usr/bin").mode, 0o040_755);
        assert_eq!(get("etc/f3").mode, 0o100_644);
        assert_eq!(get("etc/f3").data, b"abc");
        assert_eq!(get("etc/f5").data, b"abcde");
        assert!(get("etc/f0").data.is_empty());
        assert_eq!(get("init").mode, 0o100_755);
        assert_eq!(get("init").data, b"#!/bin/sh\n");
        assert_eq!(get("usr/bin/awk").mode, 0o120_777);
        assert_eq!(get("usr/bin/awk").data, b"/bin/busybox");
        assert_eq!(get("dev/console").mode, 0o020_600);
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert!(get("dev/console").data.is_empty());
        for (index, entry) in entries.iter().enumerate() {
            assert_eq!(entry.ino as usize, index + 1, "{}", entry.name);
            assert_eq!((entry.uid, entry.gid, entry.mtime), (0, 0, 0));
            let is_dir = entry.mode & 0o170_000 == 0o040_000;
            assert_eq!(entry.nlink, if is_dir { 2 } else { 1 }, "{}", entry.name);
        }
    }

    #[test]
    fn newc_header_layout_is_byte_exact() {
        let mut archive = Archive::default();
        archive.add_file("/a", 0o644, b"xy".to_vec()).expect("file");
        let bytes = archive.to_newc().expect("write");
        let expected_header = "070701\
            00000001000081A4000000000000000000000001\
            00000000000000020000000000000000\
            00000000000000000000000200000000";
        assert_eq!(&bytes[..110], expected_header.as_bytes());
        // "a\0" ends at 112 (a multiple of 4), data "xy" then 2 bytes of padding.
        assert_eq!(&bytes[110..116], b"a\0xy\0\0");
        assert_eq!(&bytes[116..122], b"070701");
    }

    #[test]
    fn output_is_deterministic_whatever_the_insertion_order() {
        let first = sample().to_newc().expect("write");
        assert_eq!(first, sample().to_newc().expect("write"));
        let mut reversed = Archive::default();
        reversed
            .add_char_device("/dev/console", 0o600, 5, 1)
            .expect("dev");
        reversed
            .add_symlink("/usr/bin/awk", "/bin/busybox")
            .expect("link");
        reversed
            .add_file("/init", 0o755, b"#!/bin/sh\n".to_vec())
            .expect("init");
        for size in (0..=5u8).rev() {
            let data: Vec<u8> = (0..size).map(|i| b'a' + i).collect();
            reversed
                .add_file(&format!("/etc/f{size}"), 0o644, data)
                .expect("file");
        }
        reversed.add_dir("/etc", 0o755).expect("dir");
        assert_eq!(first, reversed.to_newc().expect("write"));
    }

    #[test]
    fn paths_must_be_plain_and_absolute() {
        assert_eq!(archive_name("/usr/bin/x"), Ok("usr/bin/x"));
        assert_eq!(archive_name("/a..b/..c"), Ok("a..b/..c"));
        assert_eq!(
            archive_name("usr/bin"),
            Err(ArchiveError::NotAbsolute("usr/bin".into()))
        );
        assert_eq!(
            archive_name(""),
            Err(ArchiveError::NotAbsolute(String::new()))
        );
        assert_eq!(archive_name("/"), Err(ArchiveError::Root));
        for bad in ["/..", "/a/../b", "/a/..", "/a//b", "/a/./b", "/a/", "/a\0b"] {
            assert_eq!(
                archive_name(bad),
                Err(ArchiveError::NotPlain(bad.into())),
                "{bad:?}"
            );
        }
        let mut archive = Archive::default();
        assert!(
            archive
                .add_file("/../etc/passwd", 0o644, Vec::new())
                .is_err()
        );
        assert!(archive.add_symlink("relative", "/bin/busybox").is_err());
        assert_eq!(archive.len(), 0, "rejected paths add nothing");
    }

    #[test]
    fn conflicting_kinds_and_bad_modes_are_errors() {
        let mut archive = Archive::default();
        archive
            .add_file("/etc/motd", 0o644, b"hi".to_vec())
            .expect("file");
        assert_eq!(
            archive.add_file("/etc/motd/x", 0o644, Vec::new()),
            Err(ArchiveError::ParentNotDir {
                path: "/etc/motd/x".into(),
                parent: "/etc/motd".into()
            })
        );
        assert_eq!(
            archive.add_dir("/etc/motd", 0o755),
            Err(ArchiveError::Conflict("/etc/motd".into()))
        );
        assert_eq!(
            archive.add_file("/etc", 0o644, Vec::new()),
            Err(ArchiveError::Conflict("/etc".into()))
        );
        assert_eq!(
            archive.add_file("/x", 0o100_644, Vec::new()),
            Err(ArchiveError::BadMode {
                path: "/x".into(),
                mode: 0o100_644
            })
        );
        // A later file replaces an earlier one; a folder added twice keeps its first mode.
        archive
            .add_file("/etc/motd", 0o600, b"bye".to_vec())
            .expect("replace");
        archive.add_dir("/etc", 0o700).expect("again");
        let entries = parse_newc(&archive.to_newc().expect("write"));
        let modes: Vec<(&str, u32, &[u8])> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.mode, e.data.as_slice()))
            .collect();
        assert_eq!(
            modes,
            [
                ("etc", 0o040_755, &b""[..]),
                ("etc/motd", 0o100_600, &b"bye"[..])
            ]
        );
    }

    /// A fresh scratch folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-root-image-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn assembled_initramfs_has_base_busybox_overlay_and_extras() {
        let dir = scratch("assemble");
        let overlay = dir.join("overlay");
        fs::create_dir_all(overlay.join("etc/init.d")).expect("mkdir");
        fs::write(overlay.join("init"), "#!/bin/sh\nexec sh\n").expect("write");
        fs::set_permissions(overlay.join("init"), fs::Permissions::from_mode(0o700))
            .expect("chmod");
        fs::write(overlay.join("etc/motd"), "Mica root\n").expect("write");
        fs::set_permissions(overlay.join("etc/motd"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        // Collides with the `bin/sh` applet: the overlay's file wins.
        fs::create_dir_all(overlay.join("bin")).expect("mkdir");
        fs::write(overlay.join("bin/sh"), "not busybox").expect("write");
        std::os::unix::fs::symlink("../init", overlay.join("etc/init.d/rcS")).expect("symlink");
        let extra = dir.join("rootd");
        fs::write(&extra, "ELF").expect("write");
        let spec = RootImageSpec {
            overlay: Some(overlay),
            files: vec![
                (extra.clone(), "/usr/sbin/rootd".into(), 0o750),
                (extra, "/usr/bin/awk".into(), 0o755),
            ],
        };
        let applets = parse_applets("bin/sh\nusr/bin/awk\nsbin/init\nlinuxrc\nbin/busybox\n");
        let archive = assemble(b"BUSYBOX".to_vec(), &applets, &spec).expect("assemble");
        let entries = parse_newc(&archive.to_newc().expect("write"));
        let get = |name: &str| entries.iter().find(|e| e.name == name).expect(name);

        for dir in [
            "bin", "sbin", "dev", "proc", "sys", "run", "etc", "usr/bin", "usr/sbin", "lib",
        ] {
            assert_eq!(get(dir).mode, 0o040_755, "{dir}");
        }
        assert_eq!(get("tmp").mode, 0o041_777);
        assert_eq!(get("root").mode, 0o040_700);
        assert_eq!(
            (get("dev/console").mode, get("dev/console").rdev),
            (0o020_600, (5, 1))
        );
        assert_eq!(
            (get("dev/null").mode, get("dev/null").rdev),
            (0o020_666, (1, 3))
        );
        assert_eq!(
            (get("dev/ttyS1").mode, get("dev/ttyS1").rdev),
            (0o020_600, (4, 65))
        );
        assert_eq!(
            (get("bin/busybox").mode, &get("bin/busybox").data[..]),
            (0o100_755, &b"BUSYBOX"[..])
        );
        for link in ["sbin/init", "linuxrc"] {
            assert_eq!(get(link).mode, 0o120_777, "{link}");
            assert_eq!(get(link).data, b"/bin/busybox", "{link}");
        }
        // Overlay: executable bit → 0755, else 0644; links stay links.
        assert_eq!(get("init").mode, 0o100_755);
        assert_eq!(get("etc/motd").mode, 0o100_644);
        assert_eq!(get("etc/motd").data, b"Mica root\n");
        assert_eq!(get("etc/init.d").mode, 0o040_755);
        assert_eq!(get("etc/init.d/rcS").data, b"../init");
        // Collisions: the overlay and the extras win over applet links.
        assert_eq!(
            (get("bin/sh").mode, &get("bin/sh").data[..]),
            (0o100_644, &b"not busybox"[..])
        );
        assert_eq!(
            (get("usr/bin/awk").mode, &get("usr/bin/awk").data[..]),
            (0o100_755, &b"ELF"[..])
        );
        assert_eq!(get("usr/sbin/rootd").mode, 0o100_750);
        assert_eq!(
            entries.iter().filter(|e| e.name == "bin/busybox").count(),
            1
        );

        // A bad extra path is an error, not a silent skip.
        let bad = RootImageSpec {
            overlay: None,
            files: vec![(dir.join("rootd"), "/usr/../etc/x".into(), 0o755)],
        };
        let err = assemble(Vec::new(), &[], &bad).expect_err("`..` is rejected");
        assert!(err.0.contains("/usr/../etc/x"), "{err}");
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn apt_output_is_parsed_into_names_and_versions() {
        let depends = "linux-image-amd64\n  Depends: <linux-image-virtual>\n  \
                       Depends: linux-image-6.1.0-56-amd64\n  Depends: other\n";
        assert_eq!(
            parse_kernel_dependency(depends).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(parse_kernel_dependency("linux-image-amd64\n"), None);
        assert_eq!(
            parse_kernel_dependency("  Depends: linux-image-$(reboot)\n"),
            None,
            "only package names"
        );
        let policy = "linux-image-6.1.0-56-amd64:\n  Installed: (none)\n  \
                      Candidate: 6.1.192-2\n  Version table:\n     6.1.192-2 500\n\
                      busybox-static:\n  Installed: (none)\n  Candidate: 1:1.35.0-4+deb12u1+b1\n  \
                      Version table:\n     1:1.35.0-4+deb12u1+b1 500\n\
                      nothing:\n  Installed: (none)\n  Candidate: (none)\n";
        let version = parse_candidate(policy, "busybox-static").expect("candidate");
        assert_eq!(version, "1:1.35.0-4+deb12u1+b1");
        assert_eq!(file_version(&version), "1%3a1.35.0-4+deb12u1+b1");
        assert_eq!(
            parse_candidate(policy, "linux-image-6.1.0-56-amd64").as_deref(),
            Some("6.1.192-2")
        );
        assert_eq!(parse_candidate(policy, "nothing"), None);
        assert_eq!(parse_candidate(policy, "busybox"), None, "whole names only");
        assert_eq!(parse_candidate("", "busybox-static"), None);
        assert_eq!(
            parse_applets("usr/bin/[\nsbin/init\n\nlinuxrc\n"),
            ["/usr/bin/[", "/sbin/init", "/linuxrc"]
        );
    }

    #[test]
    fn cached_files_are_found_by_package_and_version() {
        let dir = scratch("cache");
        let debs = dir.join("debs");
        fs::create_dir_all(&debs).expect("mkdir");
        fs::write(debs.join("busybox-static_1%3a1.35.0-4_amd64.deb"), "").expect("write");
        fs::write(debs.join("busybox-static_1%3a1.35.0-40_amd64.deb"), "").expect("write");
        let found = cached_deb(&debs, "busybox-static_1%3a1.35.0-4").expect("read");
        assert_eq!(
            found,
            Some(debs.join("busybox-static_1%3a1.35.0-4_amd64.deb"))
        );
        assert_eq!(cached_deb(&debs, "busybox-static_2").expect("read"), None);

        let extracted = dir.join("extracted/k_1");
        assert!(!matches_member(&extracted, "./boot/vmlinuz-*").expect("read"));
        fs::create_dir_all(extracted.join("boot")).expect("mkdir");
        fs::write(extracted.join("boot/vmlinuz-6.1.0-56-amd64"), "MZ").expect("write");
        assert!(matches_member(&extracted, "./boot/vmlinuz-*").expect("read"));
        assert!(!matches_member(&extracted, "./bin/busybox").expect("read"));
        assert_eq!(
            find_vmlinuz(&extracted).expect("one kernel"),
            extracted.join("boot/vmlinuz-6.1.0-56-amd64")
        );
        fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn cache_dir_follows_the_environment() {
        fn env<'a>(
            pairs: &'a [(&'a str, &'a str)],
        ) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
            move |name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| std::ffi::OsString::from(value))
            }
        }
        let all = [
            ("MICA_CACHE", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(cache_dir_from(env(&all)), PathBuf::from("/c"));
        let no_mica = [("MICA_CACHE", ""), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(cache_dir_from(env(&no_mica)), PathBuf::from("/x/mica"));
        assert_eq!(
            cache_dir_from(env(&[("HOME", "/h")])),
            PathBuf::from("/h/.cache/mica")
        );
        assert_eq!(
            cache_dir_from(env(&[])),
            crate::workspace::target_dir().join("mica-cache")
        );
    }
}
