//! Packs a fixture image from `images/<name>/image.json` (see `hoist::oci_build::spec`).
//!
//! `cargo run --example mkimage -- SPEC OUT [--format oci-archive|oci-dir|docker-archive] [--ref REF] [--tag REPO:TAG]`

use std::path::PathBuf;
use std::process::exit;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(spec), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: mkimage SPEC OUT [--format oci-archive|oci-dir|docker-archive] [--ref REF] [--tag REPO:TAG]");
        exit(2);
    };
    let (mut format, mut reference, mut tag) = ("oci-archive".to_string(), "latest".to_string(), None);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--format" => format = value,
            "--ref" => reference = value,
            "--tag" => tag = Some(value),
            _ => {
                eprintln!("mkimage: unknown option {flag}");
                exit(2);
            }
        }
    }
    let img = hoist::oci_build::spec::build(&PathBuf::from(&spec)).unwrap_or_else(|e| {
        eprintln!("mkimage: {e}");
        exit(1);
    });
    let built = img.build();
    let out = PathBuf::from(out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).expect("output directory");
    }
    let result = match format.as_str() {
        "oci-dir" => built.write_oci_dir(&out, &reference),
        "oci-archive" => write(&out, &built.oci_archive(&reference)),
        "docker-archive" => {
            let tag =
                tag.unwrap_or_else(|| format!("{}:{reference}", out.file_stem().unwrap_or_default().to_string_lossy()));
            write(&out, &built.docker_archive(&img.layers, &tag))
        }
        other => {
            eprintln!("mkimage: unknown format {other}");
            exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("mkimage: {}: {e}", out.display());
        exit(1);
    }
    println!("{} {} {} ({} layers)", out.display(), format, built.manifest, img.layers.len());
}

/// Writes through a temporary file so a half-written archive never looks finished.
fn write(out: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = out.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, out)
}
