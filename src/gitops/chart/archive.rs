//! Unpacking a chart archive (`.tgz`, as `helm package` writes it) for the renderer, with bounds:
//! an archive is as hostile as a repository. Only regular files and directories under one
//! top-level directory (the chart's) are accepted, paths stay inside it, and the unpacked files
//! are counted and measured as they are read, so a gzip bomb stops at the limit. The chart is
//! written beside its destination and renamed into place: a crash never leaves half a chart.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::{Archive, EntryType};

/// How much one unpacked chart may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Files and directories.
    pub max_entries: u64,
    /// Bytes of file content, unpacked.
    pub max_bytes: u64,
}

/// Unpacks `archive` into `dest` (unless it is there already) and returns the chart's directory.
pub fn unpack_chart(archive: &[u8], dest: &Path, limits: ArchiveLimits) -> Result<PathBuf, String> {
    if let Some(chart_dir) = chart_dir_of(dest) {
        return Ok(chart_dir);
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    // Dropped (and deleted) on every early return; kept only once renamed into place.
    let staging = tempfile::Builder::new()
        .prefix(".partial-")
        .tempdir_in(parent)
        .map_err(|e| format!("{}: {e}", parent.display()))?;
    unpack_into(archive, staging.path(), limits)?;
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, dest) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another reconcile unpacked the same chart first: use its copy.
        if chart_dir_of(dest).is_none() {
            return Err(format!("{}: {e}", dest.display()));
        }
    }
    chart_dir_of(dest).ok_or_else(|| "the archive holds no chart directory".to_string())
}

/// The one directory under `dest` (the chart's), when `dest` is an unpacked chart.
pub(super) fn chart_dir_of(dest: &Path) -> Option<PathBuf> {
    let mut dirs = std::fs::read_dir(dest)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()));
    let only = dirs.next()?;
    dirs.next().is_none().then(|| only.path())
}

fn unpack_into(archive: &[u8], root: &Path, limits: ArchiveLimits) -> Result<(), String> {
    // The decompressed stream is cut one byte past the limit: reading that byte means too much.
    let cap = limits.max_bytes.saturating_add(1);
    let mut tar = Archive::new(GzDecoder::new(archive).take(cap.saturating_mul(2)));
    let mut top: Option<String> = None;
    let (mut entries, mut bytes) = (0u64, 0u64);
    let all = tar
        .entries()
        .map_err(|e| format!("not a gzipped tar archive: {e}"))?;
    for entry in all {
        let mut entry = entry.map_err(|e| format!("corrupt archive: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("corrupt archive path: {e}"))?
            .into_owned();
        let shown = path.display().to_string();
        let first = checked_first_component(&path).ok_or_else(|| {
            format!("entry {shown:?} is not a relative path inside the chart directory")
        })?;
        match &top {
            None => top = Some(first),
            Some(top) if *top == first => {}
            Some(top) => {
                return Err(format!(
                    "entry {shown:?} is outside the chart directory {top:?} (a chart archive holds one)"
                ));
            }
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(format!(
                "more than {} files and directories",
                limits.max_entries
            ));
        }
        let target = root.join(&path);
        match entry.header().entry_type() {
            EntryType::Directory => {
                std::fs::create_dir_all(&target).map_err(|e| format!("{shown}: {e}"))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                bytes = bytes.saturating_add(entry.size());
                if bytes > limits.max_bytes {
                    return Err(format!("more than {} bytes unpacked", limits.max_bytes));
                }
                write_file(&mut entry, &target).map_err(|e| format!("{shown}: {e}"))?;
            }
            other => {
                return Err(format!(
                    "entry {shown:?} is a {other:?}: a chart archive holds only files and directories"
                ));
            }
        }
    }
    if top.is_none() {
        return Err("the archive is empty".to_string());
    }
    Ok(())
}

/// The first component of a path made only of normal components, else `None`.
fn checked_first_component(path: &Path) -> Option<String> {
    let mut components = path.components().filter(|c| *c != Component::CurDir);
    let first = match components.next()? {
        Component::Normal(name) => name.to_str()?.to_string(),
        _ => return None,
    };
    components
        .all(|c| matches!(c, Component::Normal(_)))
        .then_some(first)
}

fn write_file(entry: &mut impl Read, target: &Path) -> std::io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)?;
    std::io::copy(entry, &mut file)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    const LIMITS: ArchiveLimits = ArchiveLimits {
        max_entries: 100,
        max_bytes: 1 << 20,
    };

    /// A gzipped tar of `files` (path, content); a path ending in `/` is a directory.
    pub(crate) fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            if path.ends_with('/') {
                header.set_entry_type(EntryType::Directory);
                header.set_size(0);
            } else {
                header.set_size(content.len() as u64);
            }
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// A tar whose entry's name is written raw into the header (the `tar` builder refuses `..`).
    fn tgz_raw_name(name: &str, entry_type: EntryType) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(entry_type);
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        let mut data = header.as_bytes().to_vec();
        data.extend_from_slice(b"x");
        data.resize(data.len() + 511, 0);
        data.extend_from_slice(&[0; 1024]);
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        std::io::Write::write_all(&mut gz, &data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_chart_archive_is_unpacked_and_its_directory_returned() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("podinfo-1.2.3");
        let archive = tgz(&[
            ("podinfo/Chart.yaml", b"name: podinfo\nversion: 1.2.3\n"),
            ("podinfo/templates/", b""),
            ("podinfo/templates/cm.yaml", b"kind: ConfigMap\n"),
        ]);
        let chart = unpack_chart(&archive, &dest, LIMITS).unwrap();
        assert_eq!(chart, dest.join("podinfo"));
        assert!(chart.join("templates/cm.yaml").is_file());
        // Unpacked once: a second call returns the same directory without reading the archive.
        assert_eq!(unpack_chart(b"not gzip", &dest, LIMITS).unwrap(), chart);
    }

    #[test]
    fn entries_leaving_the_chart_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, kind) in [
            ("../evil", EntryType::Regular),
            ("/etc/evil", EntryType::Regular),
            ("chart/../../evil", EntryType::Regular),
            ("chart/link", EntryType::Symlink),
            ("chart/hard", EntryType::Link),
        ] {
            let dest = dir.path().join("x");
            let error = unpack_chart(&tgz_raw_name(name, kind), &dest, LIMITS).unwrap_err();
            assert!(!dest.exists(), "{name}: nothing is left behind");
            assert!(
                error.contains(name.trim_start_matches('/')) || error.contains("chart"),
                "{name}: {error}"
            );
        }
        assert!(!dir.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn two_top_level_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tgz(&[("a/Chart.yaml", b"x"), ("b/Chart.yaml", b"y")]);
        let error = unpack_chart(&archive, &dir.path().join("x"), LIMITS).unwrap_err();
        assert!(error.contains("outside the chart directory"), "{error}");
    }

    #[test]
    fn limits_stop_bombs_and_floods() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![0u8; 2 << 20];
        let error =
            unpack_chart(&tgz(&[("c/big", &big)]), &dir.path().join("a"), LIMITS).unwrap_err();
        assert!(error.contains("more than 1048576 bytes"), "{error}");
        let names: Vec<String> = (0..101).map(|i| format!("c/f{i}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let error = unpack_chart(&tgz(&files), &dir.path().join("b"), LIMITS).unwrap_err();
        assert!(error.contains("more than 100 files"), "{error}");
        let error = unpack_chart(b"\x1f\x8b garbage", &dir.path().join("c"), LIMITS).unwrap_err();
        assert!(error.contains("archive"), "{error}");
        assert!(unpack_chart(&tgz(&[]), &dir.path().join("d"), LIMITS).is_err());
    }
}
