//! Turns a [`ProfileReport`] into the two downloadable formats.
//!
//! * an SVG flamegraph (inferno, through pprof-rs's re-export) whose frames read
//!   `[library] function`, so time spent in each plugin is visible at a glance;
//! * a gzip-compressed pprof protobuf (`profile.pb.gz`, what `go tool pprof` reads) built here
//!   rather than by pprof-rs, so that every location keeps its address and points at a
//!   `Mapping` with the real file name, address range and build id. Function names carry the
//!   same `[library]` tag, and each sample has a `library` label (its leaf frame's library) for
//!   `pprof -tagfocus` / `-tagroot`.

use std::collections::HashMap;
use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use pprof::protos::{self, Message};

use super::report::ProfileReport;
use super::ProfileError;

/// Renders an SVG flamegraph. A profile without samples gives a small SVG saying so.
pub fn flamegraph_svg(report: &ProfileReport) -> Result<Vec<u8>, ProfileError> {
    let lines = folded_stacks(report);
    if lines.is_empty() {
        return Ok(empty_svg(report).into_bytes());
    }
    let mut options = pprof::flamegraph::Options::default();
    options.title = "HomeConsole CPU profile".to_owned();
    options.subtitle = Some(subtitle(report));
    options.count_name = "samples".to_owned();
    let mut svg = Vec::new();
    pprof::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| ProfileError::Render {
            format: "flamegraph",
            reason: e.to_string(),
        })?;
    Ok(svg)
}

/// Folded stacks (`thread;root;…;leaf count`), the flamegraph input. Frame names are
/// `[library] function`, inlined functions as frames of their own.
pub fn folded_stacks(report: &ProfileReport) -> Vec<String> {
    let mut lines = Vec::with_capacity(report.stacks.len());
    for stack in &report.stacks {
        if stack.count == 0 {
            continue;
        }
        let mut line = sanitize(&stack.thread);
        for location in stack
            .locations
            .iter()
            .rev()
            .filter_map(|&i| report.locations.get(i))
        {
            for function in location.functions.iter().rev() {
                line.push(';');
                line.push_str(&sanitize(&report.tagged_name(location, function)));
            }
        }
        line.push(' ');
        line.push_str(&stack.count.to_string());
        lines.push(line);
    }
    lines
}

/// Frame names must not contain the folded format's separators.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' | '\t' => ' ',
            c => c,
        })
        .collect()
}

fn subtitle(report: &ProfileReport) -> String {
    format!(
        "{} samples in {:.1} s at {} Hz; frames tagged [library]",
        report.samples(),
        report.duration.as_secs_f64(),
        report.frequency_hz
    )
}

fn empty_svg(report: &ProfileReport) -> String {
    format!(
        concat!(
            r#"<?xml version="1.0" standalone="no"?>"#,
            "\n",
            r#"<svg version="1.1" width="1200" height="60" xmlns="http://www.w3.org/2000/svg">"#,
            r#"<text x="600" y="35" text-anchor="middle" font-family="Verdana" font-size="14">"#,
            "No samples: the process used no CPU time while profiling ({})</text></svg>\n"
        ),
        subtitle(report)
    )
}

/// Builds the pprof `Profile` message (not yet encoded).
pub fn pprof_profile(report: &ProfileReport) -> protos::Profile {
    let mut strings = StringTable::default();
    let period = 1_000_000_000 / i64::from(report.frequency_hz.max(1));
    let samples_type = protos::ValueType {
        ty: strings.id("samples"),
        unit: strings.id("count"),
    };
    let cpu_type = protos::ValueType {
        ty: strings.id("cpu"),
        unit: strings.id("nanoseconds"),
    };
    let library_key = strings.id("library");
    let thread_key = strings.id("thread");

    // Mappings: one per file-backed library, ids from 1.
    let mut mapping = Vec::new();
    let mut mapping_id = vec![0u64; report.libraries.len()];
    for (i, lib) in report.libraries.iter().enumerate() {
        if lib.path.is_empty() {
            continue;
        }
        let id = mapping.len() as u64 + 1;
        mapping_id[i] = id;
        mapping.push(protos::Mapping {
            id,
            memory_start: lib.memory_start,
            memory_limit: lib.memory_limit,
            file_offset: lib.file_offset,
            filename: strings.id(&lib.path),
            build_id: strings.id(lib.build_id.as_deref().unwrap_or("")),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        });
    }

    // Functions deduplicated by (tagged name, system name, file); locations = report's, ids +1.
    let mut function = Vec::new();
    let mut function_ids: HashMap<(i64, i64, i64), u64> = HashMap::new();
    let mut location = Vec::with_capacity(report.locations.len());
    for (i, loc) in report.locations.iter().enumerate() {
        let mut line = Vec::with_capacity(loc.functions.len());
        for f in &loc.functions {
            let key = (
                strings.id(&report.tagged_name(loc, f)),
                strings.id(&f.system_name),
                strings.id(f.file.as_deref().unwrap_or("")),
            );
            let function_id = *function_ids.entry(key).or_insert_with(|| {
                let id = function.len() as u64 + 1;
                function.push(protos::Function {
                    id,
                    name: key.0,
                    system_name: key.1,
                    filename: key.2,
                    start_line: 0,
                });
                id
            });
            line.push(protos::Line {
                function_id,
                line: i64::from(f.line),
            });
        }
        location.push(protos::Location {
            id: i as u64 + 1,
            mapping_id: mapping_id.get(loc.library).copied().unwrap_or(0),
            address: loc.address,
            line,
            is_folded: false,
        });
    }

    let sample = report
        .stacks
        .iter()
        .map(|stack| {
            let count = i64::try_from(stack.count).unwrap_or(i64::MAX);
            let leaf_library = stack
                .locations
                .first()
                .and_then(|&i| report.locations.get(i))
                .map_or(super::maps::UNKNOWN_LIBRARY, |l| report.library_of(l));
            protos::Sample {
                location_id: stack.locations.iter().map(|&i| i as u64 + 1).collect(),
                value: vec![count, count.saturating_mul(period)],
                label: vec![
                    protos::Label {
                        key: thread_key,
                        str: strings.id(&stack.thread),
                        ..Default::default()
                    },
                    protos::Label {
                        key: library_key,
                        str: strings.id(leaf_library),
                        ..Default::default()
                    },
                ],
            }
        })
        .collect();

    let time_nanos = report
        .start_time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    protos::Profile {
        sample_type: vec![samples_type, cpu_type.clone()],
        sample,
        mapping,
        location,
        function,
        string_table: strings.into_vec(),
        time_nanos,
        duration_nanos: i64::try_from(report.duration.as_nanos()).unwrap_or(i64::MAX),
        period_type: Some(cpu_type),
        period,
        ..Default::default()
    }
}

/// Encodes [`pprof_profile`] and gzips it (`profile.pb.gz`).
pub fn pprof_gz(report: &ProfileReport) -> Result<Vec<u8>, ProfileError> {
    let encoded = pprof_profile(report).encode_to_vec();
    let mut gz = GzEncoder::new(
        Vec::with_capacity(encoded.len() / 3),
        Compression::default(),
    );
    gz.write_all(&encoded)
        .and_then(|()| gz.finish())
        .map_err(|e| ProfileError::Render {
            format: "pprof",
            reason: e.to_string(),
        })
}

/// pprof string table: index 0 is the empty string.
struct StringTable {
    strings: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for StringTable {
    fn default() -> Self {
        Self {
            strings: vec![String::new()],
            index: HashMap::from([(String::new(), 0)]),
        }
    }
}

impl StringTable {
    fn id(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.index.get(s) {
            return id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), id);
        id
    }

    fn into_vec(self) -> Vec<String> {
        self.strings
    }
}
