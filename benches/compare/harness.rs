//! Timing and reporting: contenders of one case run interleaved (A B C, B C A, …) for several
//! rounds; each figure is a median over rounds, and the hoist/peer ratio is the median of the
//! per-round ratios (so a slow round for everyone cancels out).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One way of doing the job being measured.
pub struct Contender<'a> {
    pub name: String,
    /// Untimed set-up before each timed run (fresh directories, removing the previous result).
    pub prepare: Box<dyn FnMut(usize) + 'a>,
    /// The timed work: commands run in sequence; the run fails the bench if one fails.
    pub run: Box<dyn FnMut(usize) -> Vec<Command> + 'a>,
}

impl<'a> Contender<'a> {
    pub fn new(name: &str, prepare: impl FnMut(usize) + 'a, run: impl FnMut(usize) -> Vec<Command> + 'a) -> Self {
        Contender { name: name.to_string(), prepare: Box::new(prepare), run: Box::new(run) }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub case: String,
    pub contender: String,
    pub unit: &'static str,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
    /// Median of per-round hoist/this ratios (absent for hoist itself).
    pub hoist_ratio: Option<f64>,
    pub note: Option<String>,
}

#[derive(Default, Serialize)]
pub struct Report {
    pub machine: BTreeMap<String, String>,
    pub figures: Vec<Figure>,
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 }
}

/// Runs a command to completion, quietly; panics with its output when it fails.
pub fn must(mut c: Command) {
    let out = c.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn timed(cmds: Vec<Command>) -> Duration {
    let start = Instant::now();
    for c in cmds {
        must(c);
    }
    start.elapsed()
}

/// Measures `contenders` (the first is hoist) for `rounds` rounds, interleaved, after one warm-up
/// run each. Returns figures in milliseconds.
pub fn compare(case: &str, rounds: usize, mut contenders: Vec<Contender<'_>>) -> Vec<Figure> {
    let n = contenders.len();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); n];
    for c in contenders.iter_mut() {
        (c.prepare)(0);
        timed((c.run)(0));
    }
    for round in 1..=rounds {
        for k in 0..n {
            let i = (k + round) % n;
            let c = &mut contenders[i];
            (c.prepare)(round);
            let d = timed((c.run)(round));
            samples[i].push(d.as_secs_f64() * 1000.0);
        }
        eprint!(".");
    }
    eprintln!();
    figures(case, "ms", contenders.iter().map(|c| c.name.clone()).collect(), samples)
}

/// Figures from samples gathered elsewhere (memory, disk): index 0 is hoist.
pub fn figures(case: &str, unit: &'static str, names: Vec<String>, samples: Vec<Vec<f64>>) -> Vec<Figure> {
    let hoist = samples[0].clone();
    names
        .into_iter()
        .zip(samples)
        .enumerate()
        .map(|(i, (name, s))| {
            let ratios: Vec<f64> = hoist.iter().zip(&s).map(|(h, p)| h / p).collect();
            Figure {
                case: case.to_string(),
                contender: name,
                unit,
                median: median(&s),
                min: s.iter().cloned().fold(f64::INFINITY, f64::min),
                max: s.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                samples: s,
                hoist_ratio: (i > 0 && !ratios.is_empty()).then(|| median(&ratios)),
                note: None,
            }
        })
        .collect()
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        "ms" if v >= 10.0 => format!("{v:.0} ms"),
        "ms" => format!("{v:.1} ms"),
        "MB" => format!("{v:.1} MB"),
        other => format!("{v:.2} {other}"),
    }
}

/// The project's goal for a row (issue 17's table), and whether this run meets it.
fn goal(f: &Figure) -> String {
    let c = f.contender.as_str();
    let ratio = |max: f64| match f.hoist_ratio {
        Some(r) => format!("≤ {max:.2}× {}", if r <= max { "✔" } else { "✘" }),
        None => String::new(),
    };
    let below = |max: f64, unit: &str| format!("≤ {max} {unit} {}", if f.median <= max { "✔" } else { "✘" });
    match f.case.as_str() {
        "1. cold pull, big" if c.starts_with("podman") => ratio(0.2),
        "2. unpack big (from an OCI layout)" if c.starts_with("floor: tar") => ratio(0.5),
        "2. second checkout, big" if c == "hoist mount (overlay of extracted layers)" => below(50.0, "ms"),
        "2. second checkout, small vs big" if c.starts_with("hoist mount, small image") => match f.hoist_ratio {
            Some(r) => format!("≈ 1 (0.8–1.25) {}", if (0.8..=1.25).contains(&r) { "✔" } else { "✘" }),
            None => String::new(),
        },
        "4. start /bin/true (busybox bundle)" if c == "crun run" => ratio(0.8),
        case if case.starts_with("6. resident") && c.starts_with("hoist (runner handed") => below(0.3, "MB"),
        case if case.starts_with("7. disk") && c.starts_with("podman") => ratio(1.05),
        _ => String::new(),
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| case | contender | median | min–max | hoist / this | goal |\n| --- | --- | --- | --- | --- | --- |\n",
        );
        for f in &self.figures {
            let ratio = f.hoist_ratio.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into());
            let contender = match &f.note {
                Some(n) => format!("{} ({n})", f.contender),
                None => f.contender.clone(),
            };
            out.push_str(&format!(
                "| {} | {} | **{}** | {}–{} | {} | {} |\n",
                f.case,
                contender,
                fmt_value(f.median, f.unit),
                fmt_value(f.min, f.unit),
                fmt_value(f.max, f.unit),
                ratio,
                goal(f)
            ));
        }
        out
    }
}
