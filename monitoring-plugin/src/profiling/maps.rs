//! Which shared object does an address belong to?
//!
//! The monitoring plugin is one cdylib among several in the host process, so a CPU profile is
//! only useful if each frame says which library it comes from. This module parses
//! `/proc/self/maps` into a sorted address table, caches it, re-reads it when an address is not
//! found (plugins are hot-loaded), and turns mapping paths into readable library names — the
//! host `dlopen`s a *copy* of each plugin named
//! `<data_dir>/plugin-cache/<stem>.<pid>.<nanos>.<seq>.<ext>`, which [`library_name`] turns back
//! into `<stem>.<ext>`.

use std::path::Path;

/// Name used for addresses that belong to no file-backed mapping (anonymous memory, JIT code,
/// a library unloaded before the report was built).
pub const UNKNOWN_LIBRARY: &str = "unknown";

/// One line of `/proc/<pid>/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address of the mapping.
    pub end: u64,
    /// Whether the mapping is executable (`x` in the permissions).
    pub executable: bool,
    /// Offset of the mapping in the backing file.
    pub offset: u64,
    /// Backing path as the kernel prints it: a file path (maybe ending in ` (deleted)`), a
    /// pseudo-path like `[vdso]`, or empty for anonymous memory.
    pub path: String,
}

/// Parses one `/proc/<pid>/maps` line; `None` if it is malformed.
///
/// Format: `start-end perms offset dev inode [pathname]`, where the pathname may contain spaces.
pub fn parse_maps_line(line: &str) -> Option<MapEntry> {
    let mut rest = line.trim_end_matches(['\n', '\r']);
    let mut fields = [""; 5];
    for field in &mut fields {
        rest = rest.trim_start_matches([' ', '\t']);
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let [range, perms, offset, _dev, _inode] = fields;
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end < start || perms.len() < 3 {
        return None;
    }
    Some(MapEntry {
        start,
        end,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
        offset: u64::from_str_radix(offset, 16).ok()?,
        path: rest.trim().to_owned(),
    })
}

/// Parses a whole maps file, skipping malformed lines, sorted by start address.
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    let mut entries: Vec<MapEntry> = text.lines().filter_map(parse_maps_line).collect();
    entries.sort_by_key(|e| e.start);
    entries
}

/// Readable library name for a mapping path (pure).
///
/// * `""` (anonymous memory) → [`UNKNOWN_LIBRARY`];
/// * `[vdso]`, `[stack]`, … → `vdso`, `stack`, …;
/// * a file path → its file name, without a trailing ` (deleted)`, and with the host's
///   plugin-cache suffix removed: `libdemo_devices.12345.1700000000123456789.0.so` →
///   `libdemo_devices.so`. The suffix is recognised as three all-digit dot-separated fields
///   (pid, nanoseconds, sequence) just before the extension; ordinary versioned names such as
///   `libc.so.6` or `libssl.so.3` are left alone.
pub fn library_name(path: &str) -> String {
    let path = path.trim();
    let path = path.strip_suffix(" (deleted)").unwrap_or(path).trim_end();
    if path.is_empty() {
        return UNKNOWN_LIBRARY.to_owned();
    }
    if let Some(pseudo) = path.strip_prefix('[').and_then(|p| p.strip_suffix(']')) {
        return if pseudo.is_empty() {
            UNKNOWN_LIBRARY.to_owned()
        } else {
            pseudo.to_owned()
        };
    }
    let file = Path::new(path)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.to_owned());
    strip_plugin_cache_suffix(&file).unwrap_or(file)
}

/// `<stem>.<pid>.<nanos>.<seq>.<ext>` → `<stem>.<ext>`; `None` when `file` is not of that form.
fn strip_plugin_cache_suffix(file: &str) -> Option<String> {
    let parts: Vec<&str> = file.split('.').collect();
    if parts.len() < 5 {
        return None;
    }
    let n = parts.len();
    let (stem, numbers, ext) = (&parts[..n - 4], &parts[n - 4..n - 1], parts[n - 1]);
    let all_digits = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ext_ok = !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric());
    let ext_is_number = ext.bytes().all(|b| b.is_ascii_digit());
    if !numbers.iter().all(all_digits) || !ext_ok || ext_is_number || stem.concat().is_empty() {
        return None;
    }
    Some(format!("{}.{}", stem.join("."), ext))
}

/// A snapshot of the process's mappings, searchable by address.
#[derive(Debug, Clone, Default)]
pub struct MapsTable {
    entries: Vec<MapEntry>,
}

impl MapsTable {
    /// Builds a table from parsed entries (sorted here, whatever their order).
    pub fn new(mut entries: Vec<MapEntry>) -> Self {
        entries.sort_by_key(|e| e.start);
        Self { entries }
    }

    /// Reads and parses `/proc/self/maps`.
    pub fn read_self() -> std::io::Result<Self> {
        Ok(Self::new(parse_maps(&std::fs::read_to_string(
            "/proc/self/maps",
        )?)))
    }

    /// The mapping containing `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<&MapEntry> {
        let idx = self.entries.partition_point(|e| e.start <= addr);
        let entry = self.entries.get(idx.checked_sub(1)?)?;
        (addr < entry.end).then_some(entry)
    }

    /// All entries, sorted by start address.
    pub fn entries(&self) -> &[MapEntry] {
        &self.entries
    }

    /// Address span of every mapping with the same backing `path`: `(lowest start, highest end,
    /// offset of the lowest mapping)`.
    pub fn span_of(&self, path: &str) -> Option<(u64, u64, u64)> {
        let mut it = self
            .entries
            .iter()
            .filter(|e| !path.is_empty() && e.path == path);
        let first = it.next()?;
        let end = it.fold(first.end, |end, e| end.max(e.end));
        Some((first.start, end, first.offset))
    }
}

/// Looks addresses up in a cached [`MapsTable`], re-reading the maps source once per
/// resolver when an address is not found (a plugin loaded after the last read).
pub struct LibraryResolver<F = fn() -> std::io::Result<String>> {
    table: MapsTable,
    refreshed: bool,
    read: F,
}

impl LibraryResolver {
    /// A resolver over `/proc/self/maps`, read now.
    pub fn for_self() -> Self {
        fn read() -> std::io::Result<String> {
            std::fs::read_to_string("/proc/self/maps")
        }
        Self::with_source(read)
    }
}

impl<F> LibraryResolver<F> {
    /// The current snapshot.
    pub fn table(&self) -> &MapsTable {
        &self.table
    }
}

impl<F: FnMut() -> std::io::Result<String>> LibraryResolver<F> {
    /// A resolver over any maps source (tests use a closure). An unreadable source gives an
    /// empty table: every address is then [`UNKNOWN_LIBRARY`], which is not an error.
    pub fn with_source(mut read: F) -> Self {
        let table = MapsTable::new(read().map(|t| parse_maps(&t)).unwrap_or_default());
        Self {
            table,
            refreshed: false,
            read,
        }
    }

    /// The mapping containing `addr`; on a miss, re-reads the source (at most once per
    /// resolver, so unmapped addresses cannot make it re-read for every frame).
    pub fn lookup(&mut self, addr: u64) -> Option<&MapEntry> {
        if self.table.find(addr).is_none() && !self.refreshed {
            self.refreshed = true;
            if let Ok(text) = (self.read)() {
                self.table = MapsTable::new(parse_maps(&text));
            }
        }
        self.table.find(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
5581a000-5581b000 r--p 00000000 08:01 1234   /usr/bin/host-harness
5581b000-5581f000 r-xp 00001000 08:01 1234   /usr/bin/host-harness
7f00aa000000-7f00aa100000 r--p 00000000 08:01 99 /data/plugin-cache/libdemo_devices.4242.1700000000123456789.3.so
7f00aa100000-7f00aa300000 r-xp 00100000 08:01 99 /data/plugin-cache/libdemo_devices.4242.1700000000123456789.3.so
7f00ab000000-7f00ab021000 rw-p 00000000 00:00 0
7f00ac000000-7f00ac200000 r-xp 00028000 08:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7f00ad000000-7f00ad010000 r-xp 00000000 08:01 55 /tmp/dir with space/libx.so (deleted)
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
not a maps line
";

    #[test]
    fn parses_lines_and_paths_with_spaces() {
        let entries = parse_maps(MAPS);
        assert_eq!(entries.len(), 8);
        assert_eq!(entries[1].start, 0x5581b000);
        assert_eq!(entries[1].end, 0x5581f000);
        assert_eq!(entries[1].offset, 0x1000);
        assert!(entries[1].executable);
        assert!(!entries[0].executable);
        assert_eq!(entries[4].path, "");
        assert_eq!(entries[6].path, "/tmp/dir with space/libx.so (deleted)");
        assert_eq!(entries[7].path, "[vdso]");
    }

    #[test]
    fn malformed_lines_are_none() {
        for line in [
            "",
            "zz-10 r-xp 0 0 0",
            "10-zz r-xp 0 0 0",
            "20-10 r-xp 0 0 0 /x",
            "10-20 r-xp",
            "10-20 r-xp 0 08:01",
            "1020 r-xp 0 08:01 1 /x",
            "10-20 r 0 08:01 1 /x",
        ] {
            assert_eq!(parse_maps_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn finds_addresses() {
        let table = MapsTable::new(parse_maps(MAPS));
        let lib = |a| table.find(a).map(|e| library_name(&e.path));
        assert_eq!(lib(0x5581b123).as_deref(), Some("host-harness"));
        assert_eq!(lib(0x7f00aa1fffff).as_deref(), Some("libdemo_devices.so"));
        assert_eq!(lib(0x7f00aa300000), None, "end is exclusive");
        assert_eq!(lib(0x7f00ab000010).as_deref(), Some(UNKNOWN_LIBRARY));
        assert_eq!(lib(0x7ffd00000001).as_deref(), Some("vdso"));
        assert_eq!(lib(0), None);
        assert_eq!(lib(u64::MAX), None);
        let span = table.span_of("/usr/bin/host-harness");
        assert_eq!(span, Some((0x5581a000, 0x5581f000, 0)));
        assert_eq!(table.span_of(""), None);
    }

    #[test]
    fn library_names() {
        let cases = [
            (
                "/d/plugin-cache/libdemo_devices.12345.1700000000.0.so",
                "libdemo_devices.so",
            ),
            (
                "/d/plugin-cache/libdemo_devices.1.1700000000123456789.42.so",
                "libdemo_devices.so",
            ),
            (
                "/d/plugin-cache/libmy.plugin.12.34.56.so",
                "libmy.plugin.so",
            ),
            ("/d/plugin-cache/libdemo.12.34.56.dylib", "libdemo.dylib"),
            (
                "/d/plugin-cache/libdemo.12.34.56.so (deleted)",
                "libdemo.so",
            ),
            ("/usr/lib/x86_64-linux-gnu/libc.so.6", "libc.so.6"),
            ("/usr/lib/libssl.so.3", "libssl.so.3"),
            ("/usr/lib/libfoo.so.1.2.3", "libfoo.so.1.2.3"),
            ("/usr/lib/libfoo.1.2.so", "libfoo.1.2.so"),
            ("/x/.1.2.3.so", ".1.2.3.so"),
            ("/usr/bin/host-harness", "host-harness"),
            ("/tmp/dir with space/libx.so (deleted)", "libx.so"),
            ("[vdso]", "vdso"),
            ("[]", UNKNOWN_LIBRARY),
            ("", UNKNOWN_LIBRARY),
            ("   ", UNKNOWN_LIBRARY),
            ("/", "/"),
        ];
        for (path, want) in cases {
            assert_eq!(library_name(path), want, "{path:?}");
        }
    }

    #[test]
    fn resolver_refreshes_once_on_miss() {
        let mut reads = 0;
        let mut resolver = LibraryResolver::with_source(|| {
            reads += 1;
            Ok(if reads == 1 {
                "1000-2000 r-xp 0 0:0 1 /a/liba.so\n".to_owned()
            } else {
                "1000-2000 r-xp 0 0:0 1 /a/liba.so\n3000-4000 r-xp 0 0:0 1 /b/libb.so\n".to_owned()
            })
        });
        assert_eq!(
            resolver.lookup(0x1500).map(|e| e.path.as_str()),
            Some("/a/liba.so")
        );
        assert_eq!(
            resolver.lookup(0x3500).map(|e| e.path.as_str()),
            Some("/b/libb.so")
        );
        assert_eq!(resolver.lookup(0x9000), None);
        assert_eq!(resolver.lookup(0x9001), None);
        drop(resolver);
        assert_eq!(reads, 2);
    }

    #[test]
    fn resolver_survives_unreadable_source() {
        let mut resolver = LibraryResolver::with_source(|| Err(std::io::Error::other("no procfs")));
        assert_eq!(resolver.lookup(0x1000), None);
    }

    #[test]
    fn reads_own_maps() {
        let table = MapsTable::read_self().expect("procfs");
        let here = reads_own_maps as fn() as usize as u64;
        let entry = table.find(here).expect("own code is mapped");
        assert!(entry.executable);
        assert!(!entry.path.is_empty());
    }
}
