//! Embeds the built web assets (the browser SDK, the console and the demo
//! store, `web/*/dist`) into the binary, so `kairos serve` serves them with
//! no other step.
//!
//! When a package's dist is missing or older than its sources, and `npm` is
//! on PATH, it is built here (`npm ci` when node_modules is missing, then
//! `npm run build`): the README's first command must show the console on a
//! machine with Node. Without npm, nothing of that package is embedded, a
//! `cargo:warning` says what to install, and the server answers its routes
//! with a 503 problem saying the same (see `src/web.rs`).
//!
//! Writes `$OUT_DIR/web_assets.rs`: `PACKAGES`, one entry per package with
//! its files (bytes, gzipped bytes when the build wrote `<file>.gz`, and a
//! strong ETag from the content hash).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// Each package: its directory under `web/` and the files of `dist/` the
/// server needs (the npm package's other outputs are not served).
const PACKAGES: [(&str, &[&str]); 2] = [
    ("sdk", &["kairos.js"]),
    (
        "console",
        &[
            "index.html",
            "console.js",
            "console.css",
            "demo.html",
            "demo.js",
            "demo.css",
        ],
    ),
];

/// What a package's build reads: directories (walked) and files.
const BUILD_INPUTS: [&str; 5] = [
    "src",
    "static",
    "package.json",
    "package-lock.json",
    "build.mjs",
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let web = manifest.join("../../web");
    let mut out = String::from("pub static PACKAGES: &[Package] = &[\n");
    for (name, files) in PACKAGES {
        let dir = web.join(name);
        // A missing dist is watched too (cargo then reruns this script at
        // every build until it exists); a missing input is not (it would).
        println!("cargo:rerun-if-changed={}", dir.join("dist").display());
        for input in BUILD_INPUTS.iter().map(|input| dir.join(input)) {
            if input.exists() {
                println!("cargo:rerun-if-changed={}", input.display());
            }
        }
        let built = ensure_built(name, &dir, files);
        writeln!(out, "    Package {{ name: {name:?}, files: &[").unwrap();
        if built {
            for file in files {
                embed(&mut out, &dir.join("dist").join(file), file);
            }
        }
        writeln!(out, "    ] }},").unwrap();
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("web_assets.rs");
    std::fs::write(target, out).unwrap();
}

/// Whether every file of the package is in its dist (building it first
/// when it is missing or stale and npm is available).
fn ensure_built(name: &str, dir: &Path, files: &[&str]) -> bool {
    let dist = dir.join("dist");
    let oldest_output = files
        .iter()
        .map(|file| modified(&dist.join(file)))
        .min()
        .flatten();
    let newest_input = newest_source(dir);
    let fresh = match (oldest_output, newest_input) {
        (Some(output), Some(input)) => output >= input,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if fresh {
        return true;
    }
    let have_output = oldest_output.is_some();
    match npm_build(dir) {
        Ok(()) => files.iter().all(|file| dist.join(file).exists()),
        Err(why) if have_output => {
            println!(
                "cargo:warning=web/{name}/dist is older than its sources and was not rebuilt ({why}); embedding it as it is"
            );
            true
        }
        Err(why) => {
            println!(
                "cargo:warning=web/{name} is not built and could not be ({why}): the server will answer its pages with 503 {name}_not_built. Install Node.js 18+ and npm, then run `cd web/{name} && npm ci && npm run build` and rebuild"
            );
            false
        }
    }
}

fn npm_build(dir: &Path) -> Result<(), String> {
    if !dir.join("package.json").exists() {
        return Err(format!("{} has no package.json", dir.display()));
    }
    if !dir.join("node_modules").exists() {
        run_npm(dir, &["ci", "--no-audit", "--no-fund"])?;
    }
    run_npm(dir, &["run", "build"])
}

fn run_npm(dir: &Path, args: &[&str]) -> Result<(), String> {
    let output = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|error| format!("npm is not on PATH ({error})"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
    Err(format!("`npm {}` failed: {tail}", args.join(" ")))
}

fn newest_source(dir: &Path) -> Option<SystemTime> {
    BUILD_INPUTS
        .iter()
        .filter_map(|input| newest_under(&dir.join(input)))
        .max()
}

fn newest_under(path: &Path) -> Option<SystemTime> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return modified(path);
    };
    entries
        .flatten()
        .filter_map(|entry| newest_under(&entry.path()))
        .max()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}

fn embed(out: &mut String, path: &Path, name: &str) {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let gzip = if gz.exists() {
        format!("Some(include_bytes!({:?}))", gz.display().to_string())
    } else {
        "None".to_string()
    };
    writeln!(
        out,
        "        Asset {{ name: {name:?}, body: include_bytes!({:?}), gzip: {gzip}, hash: \"{:016x}\" }},",
        path.display().to_string(),
        fnv1a(&bytes)
    )
    .unwrap();
}

/// FNV-1a, 64 bits: an ETag needs only to change when the content does.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
