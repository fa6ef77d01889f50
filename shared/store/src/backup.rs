//! Backups of a service's data directory, shared by the hub and the site agent.
//!
//! A backup is a directory holding
//! - one file per sled tree (`tree-<name>.bin`: the tree's entries in key order,
//!   each as `u32 LE key length ‖ key ‖ u32 LE value length ‖ value`),
//! - copies of the plain files the service keeps beside sled (the agent's
//!   `segments/`), under the same relative paths,
//! - and, written last, `MANIFEST`: the format, the service, sled's id
//!   high-water mark, and the size and SHA-256 of every file. A directory
//!   without a `MANIFEST` is an unfinished backup and is never restored.
//!
//! The trees are exported entry by entry, not copied as sled's files: sled's
//! background threads rewrite its files at any time, so a file copy of a
//! running database is not a snapshot. The caller makes the export a snapshot
//! by running [`write`] where no other write can interleave (the agent runs it
//! as a job on its single writer thread; the hub holds its write locks).
//!
//! [`restore`] checks every checksum before it writes anything, refuses a
//! destination that is not empty, and moves sled's id generator past every id
//! the backed-up database had handed out, so ids used as keys (the agent's
//! outbox sequence, the hub's audit log) never collide after a restore.

use lacnet_core::hex::encode as hex;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// First line of every `MANIFEST`.
pub const FORMAT: &str = "lacnet-backup v1";
/// Name of the file written last, which marks a backup complete.
pub const MANIFEST: &str = "MANIFEST";
/// A directory a fresh filesystem may hold at its root (ext4); a data
/// directory that is a volume's mount point is still "empty" with it.
const LOST_FOUND: &str = "lost+found";

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file or directory could not be read or written.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// sled failed while exporting or importing.
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    /// The destination cannot be used (exists and is not empty, or is relative).
    #[error("{}: {reason}", path.display())]
    Destination {
        /// The destination.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// The backup is unfinished, damaged, or from another service.
    #[error("the backup in {} cannot be restored: {reason}", path.display())]
    Invalid {
        /// The backup directory.
        path: PathBuf,
        /// What is wrong.
        reason: Unusable,
    },
    /// The running service could not take the snapshot (its store failed or is closing).
    #[error("the service could not take the snapshot: {0}")]
    Store(String),
    /// The running service tried and reported this error.
    #[error("the running service answered: {0}")]
    Remote(String),
    /// The control socket of a running service misbehaved.
    #[error("control socket {}: {reason}", path.display())]
    Control {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> BackupError + use<> {
    let path = path.to_path_buf();
    move |source| BackupError::Io { path, what, source }
}

/// What a service backs up.
#[derive(Debug, Clone, Copy)]
pub struct Spec<'a> {
    /// The service's name, recorded in the manifest and checked on restore.
    pub service: &'a str,
    /// The sled trees to export.
    pub trees: &'a [&'a str],
    /// A directory of plain files inside the data directory, copied as they
    /// are (files ending in `.tmp` are skipped: they were never renamed into place).
    pub files_dir: Option<&'a str>,
}

/// What a backup or restore covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The backup directory (or, for a restore, the data directory).
    pub dir: PathBuf,
    /// sled trees.
    pub trees: usize,
    /// Entries across those trees.
    pub entries: u64,
    /// Plain files copied.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// Why a backup cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// No manifest: not a backup, or one that did not finish.
    #[error("no MANIFEST: not a backup, or one that did not finish")]
    NoManifest,
    /// The manifest cannot be read; says why.
    #[error("{0}")]
    Manifest(String),
    /// A backup of another service.
    #[error("it is a backup of {found}, not of {expected}")]
    OtherService {
        /// The service the backup is of.
        found: String,
        /// The service restoring it.
        expected: String,
    },
    /// A file's size or checksum is not the manifest's.
    #[error("{file} is damaged (checksum)")]
    Damaged {
        /// The file, relative to the backup.
        file: String,
    },
    /// A tree dump stops inside an entry.
    #[error("{file} ends inside an entry")]
    Truncated {
        /// The file, relative to the backup.
        file: String,
    },
    /// A tree dump holds another number of entries than the manifest says.
    #[error("tree {tree} has {found} entries, the manifest says {expected}")]
    WrongCount {
        /// The tree.
        tree: String,
        /// Entries in the dump.
        found: u64,
        /// Entries the manifest names.
        expected: u64,
    },
}

impl Summary {
    /// Nothing copied yet, into `dir`.
    fn empty(dir: &Path) -> Summary {
        Summary {
            dir: dir.to_path_buf(),
            trees: 0,
            entries: 0,
            files: 0,
            bytes: 0,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} tree(s), {} entries, {} file(s), {} bytes",
            self.dir.display(),
            self.trees,
            self.entries,
            self.files,
            self.bytes
        )
    }
}

/// One line of the manifest: a file of the backup.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileEntry {
    /// `tree` (a sled tree dump) or `file` (a plain file).
    kind: String,
    /// Relative path inside the backup (and, for `file`, inside the data directory).
    path: String,
    size: u64,
    sha256: String,
    /// For a tree: its name and entry count.
    tree: Option<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Manifest {
    service: String,
    id_floor: u64,
    files: Vec<FileEntry>,
}

impl Manifest {
    fn render(&self) -> String {
        let mut s = format!(
            "{FORMAT}\nservice {}\nid_floor {}\n",
            self.service, self.id_floor
        );
        for f in &self.files {
            match &f.tree {
                Some((name, n)) => s.push_str(&format!(
                    "tree {} {} {} {} {}\n",
                    f.path, f.size, f.sha256, name, n
                )),
                None => s.push_str(&format!("file {} {} {}\n", f.path, f.size, f.sha256)),
            }
        }
        s
    }

    fn parse(text: &str) -> Result<Manifest, String> {
        let mut lines = text.lines();
        if lines.next() != Some(FORMAT) {
            return Err(format!("MANIFEST does not start with {FORMAT:?}"));
        }
        let mut field = |name: &str| -> Result<String, String> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| format!("MANIFEST lacks {name:?}"))
        };
        let service = field("service")?;
        let id_floor = field("id_floor")?
            .parse()
            .map_err(|e| format!("id_floor: {e}"))?;
        let mut files = Vec::new();
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{line:?}: {e}"));
            let entry = match parts.as_slice() {
                ["tree", path, size, sha, name, n] => FileEntry {
                    kind: "tree".into(),
                    path: (*path).into(),
                    size: num(size)?,
                    sha256: (*sha).into(),
                    tree: Some(((*name).into(), num(n)?)),
                },
                ["file", path, size, sha] => FileEntry {
                    kind: "file".into(),
                    path: (*path).into(),
                    size: num(size)?,
                    sha256: (*sha).into(),
                    tree: None,
                },
                _ => return Err(format!("MANIFEST line {line:?} is not understood")),
            };
            // Paths come from our own writer; refuse anything that could
            // leave the destination if the manifest was tampered with.
            if entry.path.is_empty()
                || entry.path.starts_with('/')
                || entry
                    .path
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(format!("MANIFEST names an unsafe path {:?}", entry.path));
            }
            files.push(entry);
        }
        Ok(Manifest {
            service,
            id_floor,
            files,
        })
    }
}

/// Checks that `dest` is absolute and either missing or empty (apart from a
/// filesystem's `lost+found`), and creates it.
pub fn prepare_empty_dir(dest: &Path) -> Result<(), BackupError> {
    if !dest.is_absolute() {
        return Err(BackupError::Destination {
            path: dest.to_path_buf(),
            reason: "must be an absolute path (the service may run in another directory)".into(),
        });
    }
    match std::fs::read_dir(dest) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(io(dest, "cannot list the directory"))?;
                if entry.file_name() != LOST_FOUND {
                    return Err(BackupError::Destination {
                        path: dest.to_path_buf(),
                        reason: format!(
                            "is not empty (holds {:?}); give a new or empty directory",
                            entry.file_name()
                        ),
                    });
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dest).map_err(io(dest, "cannot create the directory"))
        }
        Err(e) => Err(io(dest, "cannot read the directory")(e)),
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Creates `path`, hands a hashing writer to `fill`, then syncs the file.
fn write_hashed(
    path: &Path,
    fill: impl FnOnce(&mut Hashing<BufWriter<File>>) -> Result<(), BackupError>,
) -> Result<(u64, String), BackupError> {
    let file = File::create(path).map_err(io(path, "cannot create"))?;
    let mut w = Hashing {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
        len: 0,
    };
    fill(&mut w)?;
    w.flush().map_err(io(path, "cannot write"))?;
    let Hashing { inner, hash, len } = w;
    let file = inner
        .into_inner()
        .map_err(|e| io(path, "cannot write")(e.into_error()))?;
    file.sync_all().map_err(io(path, "cannot sync"))?;
    Ok((len, hex(&hash.finalize())))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir, "cannot sync the directory"))
}

/// Writes a backup of `db` (the trees in `spec`) and of `data_dir`'s plain
/// files into `dest`, which must be new or empty. The caller guarantees that
/// nothing writes to the database or the files meanwhile.
pub fn write(
    db: &sled::Db,
    spec: &Spec<'_>,
    data_dir: &Path,
    dest: &Path,
) -> Result<Summary, BackupError> {
    prepare_empty_dir(dest)?;
    let mut manifest = Manifest {
        service: spec.service.to_owned(),
        id_floor: 0,
        files: Vec::new(),
    };
    let mut summary = Summary::empty(dest);
    for name in spec.trees {
        let tree = db.open_tree(name)?;
        let rel = format!("tree-{name}.bin");
        let mut n = 0u64;
        let (size, sha256) = write_hashed(&dest.join(&rel), |w| {
            for kv in tree.iter() {
                let (k, v) = kv?;
                for part in [&k[..], &v[..]] {
                    let len = u32::try_from(part.len()).map_err(|_| {
                        BackupError::Store(format!("an entry of tree {name} exceeds 4 GiB"))
                    })?;
                    w.write_all(&len.to_le_bytes())
                        .and_then(|()| w.write_all(part))
                        .map_err(io(dest, "cannot write a tree dump"))?;
                }
                n += 1;
            }
            Ok(())
        })?;
        summary.trees += 1;
        summary.entries += n;
        summary.bytes += size;
        manifest.files.push(FileEntry {
            kind: "tree".into(),
            path: rel,
            size,
            sha256,
            tree: Some(((*name).to_owned(), n)),
        });
    }
    if let Some(sub) = spec.files_dir {
        let from = data_dir.join(sub);
        let to = dest.join(sub);
        std::fs::create_dir_all(&to).map_err(io(&to, "cannot create"))?;
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&from).map_err(io(&from, "cannot list"))? {
            let entry = entry.map_err(io(&from, "cannot list"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.contains(' ') {
                continue;
            }
            if entry
                .file_type()
                .map_err(io(&from, "cannot list"))?
                .is_file()
            {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let src = from.join(&name);
            let mut input = File::open(&src).map_err(io(&src, "cannot open"))?;
            let (size, sha256) = write_hashed(&to.join(&name), |w| {
                std::io::copy(&mut input, w).map_err(io(&src, "cannot copy"))?;
                Ok(())
            })?;
            summary.files += 1;
            summary.bytes += size;
            manifest.files.push(FileEntry {
                kind: "file".into(),
                path: format!("{sub}/{name}"),
                size,
                sha256,
                tree: None,
            });
        }
        sync_dir(&to)?;
    }
    // Taken after the export: a service generates an id before it writes
    // the entry keyed by it, so every id in the dump is below this one.
    manifest.id_floor = db.generate_id()?;
    // Last: its presence says the backup is complete.
    let text = manifest.render();
    write_hashed(&dest.join(MANIFEST), |w| {
        w.write_all(text.as_bytes())
            .map_err(io(dest, "cannot write the manifest"))
    })?;
    sync_dir(dest)?;
    Ok(summary)
}

/// Opens the database again right after this process closed it (see
/// [`crate::open_sled`]). Nobody else can hold the lock: the directory was
/// empty when the restore began.
fn reopen(open: impl Fn() -> sled::Result<sled::Db>) -> Result<sled::Db, BackupError> {
    Ok(crate::retry_while_locked(
        std::time::Duration::from_secs(10),
        open,
    )?)
}

fn invalid(path: &Path, reason: Unusable) -> BackupError {
    BackupError::Invalid {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads and checks a backup: the manifest, the service, and every file's
/// size and checksum.
fn verify(src: &Path, spec: &Spec<'_>) -> Result<Manifest, BackupError> {
    let text = match std::fs::read_to_string(src.join(MANIFEST)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(invalid(src, Unusable::NoManifest));
        }
        Err(e) => return Err(io(src, "cannot read the manifest")(e)),
    };
    let manifest = Manifest::parse(&text).map_err(|r| invalid(src, Unusable::Manifest(r)))?;
    if manifest.service != spec.service {
        return Err(invalid(
            src,
            Unusable::OtherService {
                found: manifest.service,
                expected: spec.service.to_owned(),
            },
        ));
    }
    for f in &manifest.files {
        let path = src.join(&f.path);
        let mut input = File::open(&path).map_err(io(&path, "cannot open"))?;
        let mut sink = Hashing {
            inner: std::io::sink(),
            hash: Sha256::new(),
            len: 0,
        };
        std::io::copy(&mut input, &mut sink).map_err(io(&path, "cannot read"))?;
        if sink.len != f.size || hex(&sink.hash.finalize()) != f.sha256 {
            let file = f.path.clone();
            return Err(invalid(src, Unusable::Damaged { file }));
        }
    }
    Ok(manifest)
}

/// Reads one length-prefixed part of a tree dump; `None` at a clean end.
fn read_part(r: &mut impl Read, at_start: bool) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    if at_start {
        // A clean end of file is allowed only before a key.
        let mut got = 0;
        while got < 4 {
            match r.read(&mut len[got..])? {
                0 if got == 0 => return Ok(None),
                0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                n => got += n,
            }
        }
    } else {
        r.read_exact(&mut len)?;
    }
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

/// Restores the backup in `src` into `dest` (new or empty), for the service
/// in `spec`. The service can then open `dest` as its data directory.
pub fn restore(src: &Path, spec: &Spec<'_>, dest: &Path) -> Result<Summary, BackupError> {
    let manifest = verify(src, spec)?;
    prepare_empty_dir(dest)?;
    let mut summary = Summary::empty(dest);
    for f in manifest.files.iter().filter(|f| f.kind == "file") {
        let to = dest.join(&f.path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent, "cannot create"))?;
        }
        let from = src.join(&f.path);
        let mut input = File::open(&from).map_err(io(&from, "cannot open"))?;
        let (size, _) = write_hashed(&to, |w| {
            std::io::copy(&mut input, w).map_err(io(&from, "cannot copy"))?;
            Ok(())
        })?;
        if let Some(parent) = to.parent() {
            sync_dir(parent)?;
        }
        summary.files += 1;
        summary.bytes += size;
    }
    // Past every id the backed-up database handed out (a sled quirk).
    let config = crate::sled_quirks::config_with_ids_past(dest, manifest.id_floor);
    let open = || config.open();
    {
        let db = open()?;
        for f in manifest.files.iter().filter(|f| f.kind == "tree") {
            let Some((name, expected)) = &f.tree else {
                continue;
            };
            let tree = db.open_tree(name)?;
            let path = src.join(&f.path);
            let mut r = BufReader::new(File::open(&path).map_err(io(&path, "cannot open"))?);
            let mut n = 0u64;
            let mut batch = sled::Batch::default();
            while let Some(k) = read_part(&mut r, true).map_err(io(&path, "cannot read"))? {
                let v = read_part(&mut r, false)
                    .map_err(io(&path, "cannot read"))?
                    .ok_or_else(|| {
                        invalid(
                            src,
                            Unusable::Truncated {
                                file: f.path.clone(),
                            },
                        )
                    })?;
                batch.insert(k, v);
                n += 1;
                if n % 10_000 == 0 {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            tree.apply_batch(batch)?;
            if n != *expected {
                return Err(invalid(
                    src,
                    Unusable::WrongCount {
                        tree: name.clone(),
                        found: n,
                        expected: *expected,
                    },
                ));
            }
            summary.trees += 1;
            summary.entries += n;
        }
        db.flush()?;
    }
    let db = reopen(open)?;
    let next = db.generate_id()?;
    if next < manifest.id_floor {
        return Err(BackupError::Store(format!(
            "sled's id generator did not move past {} (it gave {next}); do not use {}",
            manifest.id_floor,
            dest.display()
        )));
    }
    db.flush()?;
    drop(db);
    sync_dir(dest)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec<'static> = Spec {
        service: "test-service",
        trees: &["a", "b"],
        files_dir: Some("files"),
    };

    fn fill(dir: &Path) -> sled::Db {
        let db = sled::Config::new().path(dir).open().unwrap();
        let a = db.open_tree("a").unwrap();
        for i in 0..100u32 {
            a.insert(i.to_be_bytes(), vec![i as u8; i as usize])
                .unwrap();
        }
        db.open_tree("b")
            .unwrap()
            .insert(b"", b"empty key")
            .unwrap();
        db.open_tree("not-backed-up")
            .unwrap()
            .insert(b"x", b"y")
            .unwrap();
        for _ in 0..1000 {
            db.generate_id().unwrap();
        }
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(dir.join("files/one"), b"segment one").unwrap();
        std::fs::write(dir.join("files/two.tmp"), b"never renamed").unwrap();
        db
    }

    #[test]
    fn round_trip_keeps_trees_files_and_moves_ids_on() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let db = fill(&data);
        let backup = tmp.path().join("backup");
        let s = write(&db, &SPEC, &data, &backup).unwrap();
        assert_eq!((s.trees, s.entries, s.files), (2, 101, 1));
        let restored = tmp.path().join("restored");
        let r = restore(&backup, &SPEC, &restored).unwrap();
        assert_eq!((r.trees, r.entries, r.files), (2, 101, 1));
        let db2 = sled::Config::new().path(&restored).open().unwrap();
        for name in ["a", "b"] {
            let want: Vec<_> = db
                .open_tree(name)
                .unwrap()
                .iter()
                .map(|kv| kv.unwrap())
                .collect();
            let got: Vec<_> = db2
                .open_tree(name)
                .unwrap()
                .iter()
                .map(|kv| kv.unwrap())
                .collect();
            assert_eq!(want, got, "tree {name}");
        }
        assert!(!db2.tree_names().iter().any(|n| &n[..] == b"not-backed-up"));
        assert!(db2.generate_id().unwrap() > 1000, "ids must not restart");
        // Ids keep coming across a persist interval and another reopen.
        for _ in 0..1_000_100 {
            db2.generate_id().unwrap();
        }
        drop(db2);
        let db3 = sled::Config::new().path(&restored).open().unwrap();
        assert!(db3.generate_id().unwrap() > 2_000_000);
        assert_eq!(
            std::fs::read(restored.join("files/one")).unwrap(),
            b"segment one"
        );
        assert!(!restored.join("files/two.tmp").exists());
    }

    #[test]
    fn refuses_damage_unfinished_backups_other_services_and_full_destinations() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let db = fill(&data);
        let backup = tmp.path().join("backup");
        write(&db, &SPEC, &data, &backup).unwrap();

        // A non-empty destination, for a backup or a restore.
        let err = write(&db, &SPEC, &data, &backup).unwrap_err();
        assert!(matches!(err, BackupError::Destination { .. }), "{err}");
        let err = restore(&backup, &SPEC, &data).unwrap_err();
        assert!(matches!(err, BackupError::Destination { .. }), "{err}");
        let err = restore(&backup, &SPEC, Path::new("relative")).unwrap_err();
        assert!(matches!(err, BackupError::Destination { .. }), "{err}");

        // Another service's backup.
        let other = Spec {
            service: "other",
            ..SPEC
        };
        let err = restore(&backup, &other, &tmp.path().join("r1")).unwrap_err();
        assert!(
            matches!(&err, BackupError::Invalid { reason: Unusable::OtherService { found, .. }, .. } if found == "test-service"),
            "{err}"
        );

        // A damaged file, before anything is written.
        std::fs::write(backup.join("files/one"), b"segment 0ne").unwrap();
        let target = tmp.path().join("r2");
        let err = restore(&backup, &SPEC, &target).unwrap_err();
        assert!(
            matches!(&err, BackupError::Invalid { reason: Unusable::Damaged { file }, .. } if file == "files/one"),
            "{err}"
        );
        assert!(!target.exists());

        // No manifest: an unfinished backup.
        std::fs::remove_file(backup.join(MANIFEST)).unwrap();
        let err = restore(&backup, &SPEC, &tmp.path().join("r3")).unwrap_err();
        assert!(
            matches!(
                err,
                BackupError::Invalid {
                    reason: Unusable::NoManifest,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn lost_and_found_counts_as_empty_and_unsafe_paths_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join(LOST_FOUND)).unwrap();
        prepare_empty_dir(tmp.path()).unwrap();
        let bad = format!("{FORMAT}\nservice s\nid_floor 1\nfile ../etc/passwd 1 00\n");
        assert!(Manifest::parse(&bad).unwrap_err().contains("unsafe"));
    }
}
