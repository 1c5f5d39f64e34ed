//! Writing a run's stacks out: Brendan Gregg's folded format (`--folded`), and an SVG flame
//! graph rendered from the same lines by inferno (`--flamegraph`). Files are written whole or
//! not at all (a temp file renamed into place), and their directories are checked before
//! anything is attached, so a typo never costs a profiling run.

use std::{
    fs,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
};

use super::stacks::Weight;
use crate::{Error, Result};

/// Fails unless a file can be created at `path` (its directory exists and is writable).
pub fn check_writable(path: &Path, flag: &str) -> Result<()> {
    let tmp = temp_path(path);
    let file = fs::File::create(&tmp).map_err(|e| unwritable(path, flag, &e))?;
    drop(file);
    let _ = fs::remove_file(&tmp);
    Ok(())
}

/// Writes folded lines (`frame;frame;… VALUE`), one per line.
pub fn write_folded(path: &Path, lines: &[String]) -> Result<()> {
    write_atomically(path, "--folded", |w| {
        for l in lines {
            writeln!(w, "{l}")?;
        }
        Ok(())
    })
}

/// Renders folded lines as an SVG flame graph.
pub fn write_flamegraph(path: &Path, lines: &[String], by: Weight, title: &str) -> Result<()> {
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = match by {
        Weight::Bytes => "bytes",
        Weight::Calls => "calls",
    }
    .to_string();
    write_atomically(path, "--flamegraph", |w| {
        if lines.is_empty() {
            // inferno refuses empty input; an empty profile is still a valid answer.
            options.subtitle = Some("no mallocs with a recorded stack".to_string());
            return inferno::flamegraph::from_lines(&mut options, ["[none] 1"], w);
        }
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), w)
    })
}

fn write_atomically(
    path: &Path,
    flag: &str,
    body: impl FnOnce(&mut BufWriter<fs::File>) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut w = BufWriter::new(fs::File::create(&tmp)?);
        body(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        unwritable(path, flag, &e)
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

fn unwritable(path: &Path, flag: &str, e: &std::io::Error) -> Error {
    Error::InvalidArgument(format!(
        "cannot write {flag} {} ({e}): pass a path in an existing, writable directory",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_and_svg_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let lines = vec![
            "prog;main;path_small;alloc_small;malloc 1600".to_string(),
            "prog;main;path_big;alloc_big;malloc 40000".to_string(),
        ];
        let folded = dir.path().join("out.folded");
        write_folded(&folded, &lines).unwrap();
        assert_eq!(
            fs::read_to_string(&folded).unwrap(),
            lines.join("\n") + "\n"
        );
        let svg = dir.path().join("out.svg");
        write_flamegraph(&svg, &lines, Weight::Bytes, "t").unwrap();
        let text = fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<?xml"), "{}", &text[..50]);
        assert!(text.contains("alloc_small") && text.contains("alloc_big"));
        write_flamegraph(&svg, &[], Weight::Calls, "t").unwrap();
        assert!(fs::read_to_string(&svg).unwrap().contains("no mallocs"));
        // Nothing else left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn unwritable_paths_are_refused_with_the_fix() {
        let err = check_writable(Path::new("/nonexistent/dir/x.svg"), "--flamegraph").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot write --flamegraph /nonexistent/dir/x.svg"),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("pass a path in an existing, writable directory")
        );
        let dir = tempfile::tempdir().unwrap();
        check_writable(&dir.path().join("ok.folded"), "--folded").unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
