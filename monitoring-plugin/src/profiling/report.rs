//! A symbolized CPU profile whose every frame knows its shared object.
//!
//! pprof-rs's own `Report` loses the instruction pointers (its `Symbol::addr` is a
//! file-relative address, or `None` for symbol-table-only frames), so a frame cannot be traced
//! back to the `.so` it ran in. We take pprof's *unresolved* report instead, read each frame's
//! instruction pointer, symbolize it with the same `backtrace` crate pprof uses, and attribute
//! it to a library through [`super::maps`]. The result, [`ProfileReport`], is what both output
//! formats are rendered from.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::maps::{library_name, LibraryResolver, UNKNOWN_LIBRARY};

/// The pprof-rs signal handler: it and the frame after it (the kernel's signal trampoline) are
/// the profiler's own frames, as are any frames above it (the unwinder).
const SIGNAL_HANDLER: &str = "perf_signal_handler";

/// Name given to a frame whose address no symbol covers.
pub const UNSYMBOLIZED: &str = "??";

/// A loaded object (executable, shared library, vdso…) frames were attributed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Library {
    /// Readable name used as the frame tag, e.g. `libdemo_devices.so` (see
    /// [`super::maps::library_name`]).
    pub name: String,
    /// Path of the mapping as `/proc/self/maps` shows it (the plugin-cache copy for plugins);
    /// empty for [`UNKNOWN_LIBRARY`].
    pub path: String,
    /// Lowest mapped address of the object.
    pub memory_start: u64,
    /// One past the highest mapped address of the object.
    pub memory_limit: u64,
    /// File offset of the lowest mapping.
    pub file_offset: u64,
    /// GNU build id, lowercase hex, when the object has one.
    pub build_id: Option<String>,
}

/// One function at a location; several when calls were inlined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionFrame {
    /// Demangled name without the Rust hash, or [`UNSYMBOLIZED`].
    pub name: String,
    /// Raw (mangled) symbol name.
    pub system_name: String,
    /// Source file, when debug info has it.
    pub file: Option<String>,
    /// Source line, 0 when unknown.
    pub line: u32,
}

/// A sampled instruction address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Instruction pointer (return address for callers).
    pub address: u64,
    /// Index into [`ProfileReport::libraries`].
    pub library: usize,
    /// Functions at this address, innermost (inlined) first, outermost caller last.
    pub functions: Vec<FunctionFrame>,
}

/// A distinct call stack and how many samples hit it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stack {
    /// Thread name (or id when unnamed).
    pub thread: String,
    /// Indexes into [`ProfileReport::locations`], leaf first.
    pub locations: Vec<usize>,
    /// Number of samples.
    pub count: u64,
}

/// A finished, symbolized CPU profile.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    /// Sampling frequency.
    pub frequency_hz: u32,
    /// When sampling started.
    pub start_time: SystemTime,
    /// How long sampling ran.
    pub duration: Duration,
    /// Objects frames were attributed to.
    pub libraries: Vec<Library>,
    /// Distinct sampled addresses.
    pub locations: Vec<Location>,
    /// Distinct stacks with their sample counts.
    pub stacks: Vec<Stack>,
}

/// Samples attributed to one library (JSON summary row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibrarySamples {
    /// Library name, e.g. `libdemo_devices.so`.
    pub library: String,
    /// Samples whose leaf frame (the code actually running) is in this library.
    pub samples: u64,
}

/// A small JSON-friendly description of a profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileSummary {
    /// Total samples.
    pub samples: u64,
    /// Sampling frequency.
    pub frequency_hz: u32,
    /// Sampling duration in seconds.
    pub duration_seconds: f64,
    /// Self samples per library, most first.
    pub libraries: Vec<LibrarySamples>,
}

impl ProfileReport {
    /// Total number of samples.
    pub fn samples(&self) -> u64 {
        self.stacks.iter().map(|s| s.count).sum()
    }

    /// Library name of a location ([`UNKNOWN_LIBRARY`] for a bad index).
    pub fn library_of(&self, location: &Location) -> &str {
        self.libraries
            .get(location.library)
            .map_or(UNKNOWN_LIBRARY, |l| l.name.as_str())
    }

    /// `[library] function` — the name frames carry in both output formats.
    pub fn tagged_name(&self, location: &Location, function: &FunctionFrame) -> String {
        format!("[{}] {}", self.library_of(location), function.name)
    }

    /// Self samples per library, most first (ties by name). See [`top_libraries`].
    pub fn top_libraries(&self) -> Vec<(String, u64)> {
        let mut per_lib: BTreeMap<&str, u64> = BTreeMap::new();
        for stack in &self.stacks {
            let lib = stack
                .locations
                .first()
                .and_then(|&i| self.locations.get(i))
                .map_or(UNKNOWN_LIBRARY, |loc| self.library_of(loc));
            *per_lib.entry(lib).or_default() += stack.count;
        }
        let mut out: Vec<(String, u64)> = per_lib
            .into_iter()
            .map(|(l, n)| (l.to_owned(), n))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Sample count, timing and [`top_libraries`] as a serializable summary.
    pub fn summary(&self) -> ProfileSummary {
        ProfileSummary {
            samples: self.samples(),
            frequency_hz: self.frequency_hz,
            duration_seconds: self.duration.as_secs_f64(),
            libraries: self
                .top_libraries()
                .into_iter()
                .map(|(library, samples)| LibrarySamples { library, samples })
                .collect(),
        }
    }

    /// Symbolizes pprof-rs's unresolved report, attributing frames through `resolver`.
    pub(crate) fn from_unresolved<F>(
        report: &pprof::UnresolvedReport,
        resolver: &mut LibraryResolver<F>,
    ) -> Self
    where
        F: FnMut() -> std::io::Result<String>,
    {
        let mut builder = Builder::default();
        let mut stacks: HashMap<(String, Vec<usize>), u64> = HashMap::new();
        for (frames, &count) in &report.data {
            let Ok(count) = u64::try_from(count) else {
                continue;
            };
            if count == 0 {
                continue;
            }
            let ids: Vec<usize> = frames
                .frames
                .iter()
                .map(|frame| builder.location(frame, resolver))
                .collect();
            let first_own = ids
                .iter()
                .position(|&i| {
                    builder.locations[i]
                        .functions
                        .iter()
                        .any(|f| f.name == SIGNAL_HANDLER)
                })
                .map_or(0, |handler| handler + 2);
            let mut ids = ids.get(first_own..).unwrap_or_default().to_vec();
            // The unwinder often ends on a bogus return address past the thread's entry
            // point: drop trailing (outermost) frames that are neither symbolized nor mapped.
            while ids.last().is_some_and(|&i| builder.is_garbage(i)) {
                ids.pop();
            }
            let thread = match std::str::from_utf8(
                frames
                    .thread_name
                    .get(..frames.thread_name_length)
                    .unwrap_or_default(),
            ) {
                Ok(name) if !name.is_empty() => name.to_owned(),
                _ => format!("thread-{}", frames.thread_id),
            };
            *stacks.entry((thread, ids)).or_default() += count;
        }
        let mut stacks: Vec<Stack> = stacks
            .into_iter()
            .map(|((thread, locations), count)| Stack {
                thread,
                locations,
                count,
            })
            .collect();
        stacks.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.locations.cmp(&b.locations))
        });
        let mut libraries = builder.libraries;
        fill_build_ids(&mut libraries);
        ProfileReport {
            frequency_hz: u32::try_from(report.timing.frequency).unwrap_or(0),
            start_time: report.timing.start_time,
            duration: report.timing.duration,
            libraries,
            locations: builder.locations,
            stacks,
        }
    }
}

/// Self samples per library of `report`, most first: the library of each stack's leaf frame
/// (where the CPU actually was) gets that stack's samples.
pub fn top_libraries(report: &ProfileReport) -> Vec<(String, u64)> {
    report.top_libraries()
}

#[derive(Default)]
struct Builder {
    libraries: Vec<Library>,
    library_by_path: HashMap<String, usize>,
    locations: Vec<Location>,
    location_by_ip: HashMap<u64, usize>,
}

impl Builder {
    fn location<F>(&mut self, frame: &backtrace::Frame, resolver: &mut LibraryResolver<F>) -> usize
    where
        F: FnMut() -> std::io::Result<String>,
    {
        let address = frame.ip() as usize as u64;
        if let Some(&id) = self.location_by_ip.get(&address) {
            return id;
        }
        let mut functions = Vec::new();
        backtrace::resolve_frame(frame, |symbol| {
            let (name, system_name) = match symbol.name() {
                Some(n) => (
                    format!("{n:#}"),
                    String::from_utf8_lossy(n.as_bytes()).into_owned(),
                ),
                None => (UNSYMBOLIZED.to_owned(), String::new()),
            };
            functions.push(FunctionFrame {
                name,
                system_name,
                file: symbol.filename().map(|p| p.display().to_string()),
                line: symbol.lineno().unwrap_or(0),
            });
        });
        // An inlined entry without a name says nothing once a named one is there.
        if functions.iter().any(|f| f.name != UNSYMBOLIZED) {
            functions.retain(|f| f.name != UNSYMBOLIZED);
        }
        if functions.is_empty() {
            functions.push(FunctionFrame {
                name: UNSYMBOLIZED.to_owned(),
                system_name: String::new(),
                file: None,
                line: 0,
            });
        }
        // A return address may sit just past the end of its caller's mapping: look up ip - 1.
        let path = resolver
            .lookup(address.saturating_sub(1))
            .map(|e| e.path.clone())
            .unwrap_or_default();
        let library = self.library(&path, resolver);
        let id = self.locations.len();
        self.locations.push(Location {
            address,
            library,
            functions,
        });
        self.location_by_ip.insert(address, id);
        id
    }

    /// Unsymbolized and outside every file-backed mapping.
    fn is_garbage(&self, location: usize) -> bool {
        self.locations.get(location).is_some_and(|loc| {
            loc.functions.iter().all(|f| f.name == UNSYMBOLIZED)
                && self
                    .libraries
                    .get(loc.library)
                    .is_none_or(|l| l.path.is_empty())
        })
    }

    fn library<F>(&mut self, path: &str, resolver: &LibraryResolver<F>) -> usize {
        if let Some(&id) = self.library_by_path.get(path) {
            return id;
        }
        let (memory_start, memory_limit, file_offset) =
            resolver.table().span_of(path).unwrap_or_default();
        let id = self.libraries.len();
        self.libraries.push(Library {
            name: library_name(path),
            path: path.to_owned(),
            memory_start,
            memory_limit,
            file_offset,
            build_id: None,
        });
        self.library_by_path.insert(path.to_owned(), id);
        id
    }
}

/// Sets `build_id` on every library whose address span holds a segment of a loaded object
/// that has a GNU build id (found through `dl_iterate_phdr`).
fn fill_build_ids(libraries: &mut [Library]) {
    use findshlibs::{Segment, SharedLibrary, TargetSharedLibrary};
    if libraries.iter().all(|l| l.path.is_empty()) {
        return;
    }
    TargetSharedLibrary::each(|shlib| {
        let Some(id) = shlib.id() else { return };
        let hex: String = id.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        if hex.is_empty() {
            return;
        }
        for segment in shlib.segments() {
            let start = segment.actual_virtual_memory_address(shlib).0 as u64;
            for lib in libraries.iter_mut() {
                if !lib.path.is_empty() && lib.memory_start <= start && start < lib.memory_limit {
                    lib.build_id = Some(hex.clone());
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ProfileReport {
        let lib = |name: &str| Library {
            name: name.to_owned(),
            path: format!("/x/{name}"),
            memory_start: 0,
            memory_limit: 0,
            file_offset: 0,
            build_id: None,
        };
        let loc = |library, name: &str| Location {
            address: 0,
            library,
            functions: vec![FunctionFrame {
                name: name.to_owned(),
                system_name: String::new(),
                file: None,
                line: 0,
            }],
        };
        ProfileReport {
            frequency_hz: 99,
            start_time: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(1),
            libraries: vec![lib("host"), lib("libdemo_devices.so"), lib("libc.so.6")],
            locations: vec![
                loc(0, "main"),
                loc(1, "burn"),
                loc(2, "memcpy"),
                loc(7, "bad"),
            ],
            stacks: vec![
                Stack {
                    thread: "a".into(),
                    locations: vec![1, 0],
                    count: 5,
                },
                Stack {
                    thread: "a".into(),
                    locations: vec![2, 1, 0],
                    count: 3,
                },
                Stack {
                    thread: "b".into(),
                    locations: vec![0],
                    count: 3,
                },
                Stack {
                    thread: "b".into(),
                    locations: vec![],
                    count: 2,
                },
                Stack {
                    thread: "b".into(),
                    locations: vec![3],
                    count: 1,
                },
                Stack {
                    thread: "b".into(),
                    locations: vec![99],
                    count: 1,
                },
            ],
        }
    }

    #[test]
    fn top_libraries_counts_leaf_frames() {
        let r = report();
        assert_eq!(r.samples(), 15);
        assert_eq!(
            top_libraries(&r),
            vec![
                ("libdemo_devices.so".to_owned(), 5),
                (UNKNOWN_LIBRARY.to_owned(), 4),
                ("host".to_owned(), 3),
                ("libc.so.6".to_owned(), 3),
            ]
        );
        let json = serde_json::to_value(r.summary()).expect("serializes");
        assert_eq!(json["samples"], 15);
        assert_eq!(json["libraries"][0]["library"], "libdemo_devices.so");
    }

    #[test]
    fn tagged_names() {
        let r = report();
        assert_eq!(
            r.tagged_name(&r.locations[1], &r.locations[1].functions[0]),
            "[libdemo_devices.so] burn"
        );
        assert_eq!(
            r.tagged_name(&r.locations[3], &r.locations[3].functions[0]),
            "[unknown] bad"
        );
    }
}
