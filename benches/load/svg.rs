//! Line charts as SVG text, no dependencies: one function, linear or log
//! axes, a legend. Used for throughput vs N, latency distribution and
//! memory vs N.

use std::fmt::Write as _;

pub struct Axis {
    pub label: String,
    pub log: bool,
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn nice(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        format!("{}M", trim(x / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(x / 1e3))
    } else {
        trim(x)
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Tick positions for `[lo, hi]`: powers of ten (log) or ~5 round steps.
fn ticks(lo: f64, hi: f64, log: bool) -> Vec<f64> {
    if log {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        return (a..=b).map(|e| 10f64.powi(e)).collect();
    }
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(mag * 10.0);
    let mut v = Vec::new();
    let mut t = (lo / step).floor() * step;
    while t <= hi + step * 1e-9 {
        v.push(t);
        t += step;
    }
    v
}

/// Renders `series` (name, points) as a line chart.
pub fn chart(title: &str, x: &Axis, y: &Axis, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (w, h) = (760.0, 440.0);
    let (l, r, t, b) = (80.0, 200.0, 40.0, 60.0);
    let pts = series.iter().flat_map(|(_, p)| p.iter());
    let f = |v: f64, log: bool| if log { v.max(1e-12).log10() } else { v };
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(a, b) in pts {
        if (x.log && a <= 0.0) || (y.log && b <= 0.0) {
            continue;
        }
        x0 = x0.min(a);
        x1 = x1.max(a);
        y0 = y0.min(b);
        y1 = y1.max(b);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    if !y.log {
        y0 = y0.min(0.0);
    }
    let xt = ticks(x0, x1, x.log);
    let yt = ticks(y0, y1, y.log);
    let (x0, x1) = (f(xt[0].min(x0), x.log), f(xt[xt.len() - 1].max(x1), x.log));
    let (y0, y1) = (f(yt[0].min(y0), y.log), f(yt[yt.len() - 1].max(y1), y.log));
    let px = |v: f64| l + (f(v, x.log) - x0) / (x1 - x0).max(1e-12) * (w - l - r);
    let py = |v: f64| h - b - (f(v, y.log) - y0) / (y1 - y0).max(1e-12) * (h - t - b);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        o,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        (w - r + l) / 2.0,
        esc(title)
    );
    for &v in &xt {
        let p = px(v);
        let _ = write!(
            o,
            r##"<line x1="{p:.1}" y1="{t}" x2="{p:.1}" y2="{}" stroke="#ddd"/><text x="{p:.1}" y="{}" text-anchor="middle">{}</text>"##,
            h - b,
            h - b + 16.0,
            nice(v)
        );
    }
    for &v in &yt {
        let p = py(v);
        let _ = write!(
            o,
            r##"<line x1="{l}" y1="{p:.1}" x2="{}" y2="{p:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - r,
            l - 6.0,
            p + 4.0,
            nice(v)
        );
    }
    let _ = write!(
        o,
        r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        w - l - r,
        h - t - b
    );
    let _ = write!(
        o,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (w - r + l) / 2.0,
        h - 18.0,
        esc(&x.label)
    );
    let _ = write!(
        o,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        (h - b + t) / 2.0,
        (h - b + t) / 2.0,
        esc(&y.label)
    );
    for (i, (name, p)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = p
            .iter()
            .filter(|&&(a, b)| !(x.log && a <= 0.0 || y.log && b <= 0.0))
            .map(|&(a, b)| format!("{:.1},{:.1}", px(a), py(b)))
            .collect();
        let _ = write!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
            path.join(" ")
        );
        if p.len() <= 20 {
            for pt in &path {
                let (cx, cy) = pt.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(o, r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{c}"/>"#);
            }
        }
        let ly = t + 10.0 + i as f64 * 20.0;
        let _ = write!(
            o,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            w - r + 10.0,
            w - r + 30.0,
            w - r + 36.0,
            ly + 4.0,
            esc(name)
        );
    }
    o.push_str("</svg>\n");
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
