//! Results: samples from every measurement, medians over rounds, ratios
//! computed round by round (the machine is shared and noisy, so systems
//! compared are measured back to back in each round), targets, the stdout
//! table and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

/// One measurement.
#[derive(Clone, Debug)]
pub struct Sample {
    pub scenario: &'static str,
    pub system: String,
    pub n: usize,
    pub round: usize,
    pub value: f64,
    pub unit: &'static str,
    /// Server CPU in cores (1.0 = one core busy) during the measurement.
    pub server_cores: f64,
    /// Load generator CPU in cores.
    pub gen_cores: f64,
    /// CPU of everything else on the machine, in cores (noise).
    pub other_cores: f64,
    pub extra: Value,
}

/// A target from the issue, checked against a median.
#[derive(Clone, Debug)]
pub struct Target {
    pub what: String,
    pub measured: String,
    pub goal: String,
    pub met: bool,
}

#[derive(Default)]
pub struct Results {
    pub samples: Vec<Sample>,
    pub failures: Vec<String>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
    /// Named series for plots: (x, y) points.
    pub series: BTreeMap<String, Vec<(f64, f64)>>,
    /// Latency samples (ns) by system, for the distribution plot.
    pub latency: BTreeMap<String, Vec<u64>>,
    pub passed: usize,
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// The `p`-th percentile (0..=100) of sorted samples.
pub fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// 12345.6 → "12.3k".
pub fn si(x: f64) -> String {
    match x.abs() {
        a if a.is_nan() => "-".into(),
        a if a >= 1e6 => format!("{:.2}M", x / 1e6),
        a if a >= 1e4 => format!("{:.1}k", x / 1e3),
        a if a >= 100.0 => format!("{x:.0}"),
        a if a >= 1.0 => format!("{x:.2}"),
        _ => format!("{x:.3}"),
    }
}

impl Results {
    pub fn add(&mut self, s: Sample) {
        self.passed += 1;
        self.samples.push(s);
    }

    pub fn fail(&mut self, what: String) {
        eprintln!("FAILED: {what}");
        self.failures.push(what);
    }

    /// Values of one system in one scenario (at `n`), by round.
    pub fn values(&self, scenario: &str, system: &str, n: usize) -> BTreeMap<usize, f64> {
        self.samples
            .iter()
            .filter(|s| s.scenario == scenario && s.system == system && s.n == n)
            .map(|s| (s.round, s.value))
            .collect()
    }

    pub fn median_of(&self, scenario: &str, system: &str, n: usize) -> Option<f64> {
        let v: Vec<f64> = self.values(scenario, system, n).into_values().collect();
        (!v.is_empty()).then(|| median(&v))
    }

    /// Median over rounds of `a / b` (both measured in the same round).
    pub fn ratio(&self, scenario: &str, a: &str, b: &str, n: usize) -> Option<(f64, Vec<f64>)> {
        let va = self.values(scenario, a, n);
        let vb = self.values(scenario, b, n);
        let per: Vec<f64> = va
            .iter()
            .filter_map(|(r, x)| vb.get(r).map(|y| x / y))
            .collect();
        (!per.is_empty()).then(|| (median(&per), per))
    }

    /// Median over rounds of server CPU per operation of `a` over `b`
    /// (how much more server work `a` does for the same result; unlike
    /// throughput, it does not depend on the generator sharing the cores).
    pub fn cpu_ratio(&self, scenario: &str, a: &str, b: &str, n: usize) -> Option<f64> {
        let per_op = |sys: &str| -> BTreeMap<usize, f64> {
            self.samples
                .iter()
                .filter(|s| s.scenario == scenario && s.system == sys && s.n == n)
                .filter(|s| s.value > 0.0 && s.server_cores > 0.0)
                .map(|s| (s.round, s.server_cores / s.value))
                .collect()
        };
        let (va, vb) = (per_op(a), per_op(b));
        let per: Vec<f64> = va
            .iter()
            .filter_map(|(r, x)| vb.get(r).map(|y| x / y))
            .collect();
        (!per.is_empty()).then(|| median(&per))
    }

    pub fn target(&mut self, what: &str, measured: String, goal: &str, met: bool) {
        self.targets.push(Target {
            what: what.into(),
            measured,
            goal: goal.into(),
            met,
        });
    }

    /// The stdout table: one row per scenario, system and N.
    pub fn table(&self) -> String {
        let mut rows: BTreeMap<(usize, &str, usize, &str), Vec<&Sample>> = BTreeMap::new();
        let order = |s: &str| {
            [
                "heartbeat",
                "report",
                "fanout",
                "push-sub",
                "push-api",
                "storm",
                "idle-memory",
                "agent",
                "legacy",
                "sweep",
            ]
            .iter()
            .position(|x| s.starts_with(x))
            .unwrap_or(99)
        };
        for s in &self.samples {
            rows.entry((order(s.scenario), s.scenario, s.n, s.system.as_str()))
                .or_default()
                .push(s);
        }
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{:<18} {:<26} {:>6} {:>10} {:>19} {:<9} {:>5} {:>5} {:>5} {:>5} {:>9}",
            "scenario",
            "system",
            "N",
            "median",
            "min..max",
            "unit",
            "srv",
            "gen",
            "irq",
            "oth",
            "srv µs/op"
        );
        let _ = writeln!(o, "{}", "-".repeat(129));
        for ((_, scen, n, sys), v) in rows {
            let vals: Vec<f64> = v.iter().map(|s| s.value).collect();
            let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let med = median(&vals);
            let srv = median(&v.iter().map(|s| s.server_cores).collect::<Vec<_>>());
            let gen_ = median(&v.iter().map(|s| s.gen_cores).collect::<Vec<_>>());
            let oth = median(&v.iter().map(|s| s.other_cores).collect::<Vec<_>>());
            let irq = median(
                &v.iter()
                    .map(|s| s.extra["softirq_cores"].as_f64().unwrap_or(f64::NAN))
                    .collect::<Vec<_>>(),
            );
            let unit = v[0].unit;
            let per_op = if unit.ends_with("/s") && med > 0.0 && srv > 0.0 {
                format!("{:.2}", srv / med * 1e6)
            } else {
                "-".into()
            };
            let _ = writeln!(
                o,
                "{:<18} {:<26} {:>6} {:>10} {:>19} {:<9} {:>5.2} {:>5.2} {:>5.2} {:>5.2} {:>9}",
                scen,
                sys,
                n,
                si(med),
                format!("{}..{}", si(lo), si(hi)),
                unit,
                srv,
                gen_,
                irq,
                oth,
                per_op
            );
        }
        o
    }

    pub fn targets_table(&self) -> String {
        let mut o = String::new();
        for t in &self.targets {
            let _ = writeln!(
                o,
                "{:<4} {:<58} {:>18}   goal {}",
                if t.met { "MET" } else { "MISS" },
                t.what,
                t.measured,
                t.goal
            );
        }
        o
    }

    pub fn to_json(&self, machine: Value, config: Value) -> Value {
        json!({
            "machine": machine,
            "config": config,
            "samples": self.samples.iter().map(|s| json!({
                "scenario": s.scenario,
                "system": s.system,
                "n": s.n,
                "round": s.round,
                "value": s.value,
                "unit": s.unit,
                "server_cores": s.server_cores,
                "generator_cores": s.gen_cores,
                "other_cores": s.other_cores,
                "extra": s.extra,
            })).collect::<Vec<_>>(),
            "targets": self.targets.iter().map(|t| json!({
                "what": t.what, "measured": t.measured, "goal": t.goal, "met": t.met,
            })).collect::<Vec<_>>(),
            "series": self.series.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "failures": self.failures,
            "notes": self.notes,
        })
    }
}

/// The machine, for the report: nproc, CPU model, kernel, memory.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "kernel": kernel,
        "memory_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
    })
}
