//! The chart of a timeline, as hand-written SVG (no font or bitmap dependencies):
//! stacked panels over a shared time axis — request rate, instances, CPU with
//! its target, p95 latency (log scale) with its target.
//!
//! A timeline may hold far more rows than the chart has pixels (18 simulated
//! days at 15 s are 100,000 rows). Each series is reduced per pixel column to
//! its first, lowest, highest and last point (the "M4" reduction), which draws
//! the same picture as every point would, spikes included, at a few thousand
//! points per line.

use std::fmt::Write;

use super::timeline::{Summary, TimelineMeta, TimelineRow};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 78.0;
const PANEL_HEIGHT: f64 = 170.0;
const PANEL_GAP: f64 = 26.0;
const BOTTOM: f64 = 56.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - RIGHT;

#[derive(Clone, Copy, PartialEq)]
enum Scale {
    Linear,
    Log,
}

struct Series {
    name: &'static str,
    color: &'static str,
    width: f64,
    values: Vec<Option<f64>>,
}

struct Panel {
    label: &'static str,
    scale: Scale,
    /// Format of a tick value.
    unit: fn(f64) -> String,
    /// The y range always includes these (0, a target...).
    include: Vec<f64>,
    integer: bool,
    series: Vec<Series>,
    target: Option<(f64, String)>,
}

pub fn render_svg(rows: &[TimelineRow], meta: &TimelineMeta) -> String {
    let xs: Vec<f64> = rows.iter().map(|r| r.seconds).collect();
    let target_p95 = meta.target_p95_seconds;
    let target_cpu = meta.target_cpu;
    let column = |f: fn(&TimelineRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();

    let mut panels = vec![
        Panel {
            label: "requests/s",
            scale: Scale::Linear,
            unit: format_count,
            include: vec![0.0],
            integer: false,
            series: vec![
                Series {
                    name: "offered",
                    color: "#9ecae1",
                    width: 3.0,
                    values: column(|r| r.offered_rps),
                },
                Series {
                    name: "served",
                    color: "#08519c",
                    width: 1.2,
                    values: column(|r| r.served_rps),
                },
            ],
            target: None,
        },
        Panel {
            label: "instances",
            scale: Scale::Linear,
            unit: format_count,
            include: vec![0.0, 1.0],
            integer: true,
            series: vec![
                Series {
                    name: "running (incl. starting)",
                    color: "#74c476",
                    width: 3.0,
                    values: column(|r| r.instances.map(f64::from)),
                },
                Series {
                    name: "ready",
                    color: "#006d2c",
                    width: 1.2,
                    values: column(|r| r.ready_instances.map(f64::from)),
                },
            ],
            target: None,
        },
        Panel {
            label: "CPU (% of allowance)",
            scale: Scale::Linear,
            unit: |v| format!("{v:.0} %"),
            include: vec![0.0, 100.0],
            integer: false,
            series: vec![Series {
                name: "mean CPU",
                color: "#6a51a3",
                width: 1.2,
                values: column(|r| r.cpu.map(|c| c * 100.0)),
            }],
            target: target_cpu.map(|t| (t * 100.0, format!("target {:.0} %", t * 100.0))),
        },
        Panel {
            label: "p95 latency",
            scale: Scale::Log,
            unit: format_seconds,
            include: target_p95.into_iter().collect(),
            integer: false,
            series: vec![Series {
                name: "p95",
                color: "#cb181d",
                width: 1.2,
                values: column(|r| r.p95_seconds),
            }],
            target: target_p95.map(|t| (t, format!("target {}", format_seconds(t)))),
        },
    ];
    // A timeline without a column (a real-cluster replay may lack CPU) loses its panel.
    panels.retain(|p| {
        p.series
            .iter()
            .any(|s| s.values.iter().any(Option::is_some))
    });

    let height = TOP + panels.len() as f64 * (PANEL_HEIGHT + PANEL_GAP) - PANEL_GAP + BOTTOM;
    let (t0, t1) = time_range(rows);
    let x_of = |t: f64| LEFT + (t - t0) / (t1 - t0) * PLOT_WIDTH;
    let (x_ticks, time_name) = time_ticks(t0, t1);

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = meta.title.as_deref().unwrap_or("Auto-scaler timeline");
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="28" font-size="18" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let summary = Summary::of(rows, target_p95);
    let mut subtitle = format!(
        "peak {} requests/s · {} to {} instances · {} scale-ups, {} scale-downs",
        format_count(summary.peak_offered_rps.round()),
        summary.min_instances,
        summary.peak_instances,
        summary.scale_ups,
        summary.scale_downs
    );
    if let Some(target) = target_p95 {
        let _ = write!(
            subtitle,
            " · p95 above {} for {:.2} % of the time",
            format_seconds(target),
            100.0 * summary.seconds_p95_above_target / summary.duration_s.max(1.0)
        );
    }
    if summary.failed_requests > 0.0 {
        let _ = write!(
            subtitle,
            " · {:.3} % of requests shed",
            100.0 * summary.failed_requests / summary.offered_requests.max(1.0)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="50" fill="#444">{}</text>"##,
        escape(&subtitle)
    );

    for (i, panel) in panels.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_HEIGHT + PANEL_GAP);
        let bottom = top + PANEL_HEIGHT;
        let last = i + 1 == panels.len();
        draw_panel(&mut svg, panel, &xs, top, bottom, &x_of);
        for (tick, label) in &x_ticks {
            let x = x_of(*tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="#e6e6e6"/>"##
            );
            if last {
                let _ = writeln!(
                    svg,
                    r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    bottom + 16.0,
                    label
                );
            }
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{PLOT_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="#888"/>"##
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{time_name}</text>"#,
        LEFT + PLOT_WIDTH / 2.0,
        height - 14.0
    );
    svg.push_str("</svg>\n");
    svg
}

fn draw_panel(
    svg: &mut String,
    panel: &Panel,
    xs: &[f64],
    top: f64,
    bottom: f64,
    x_of: &dyn Fn(f64) -> f64,
) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in panel
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .chain(&panel.include)
        .copied()
        .filter(|v| v.is_finite() && (panel.scale == Scale::Linear || *v > 0.0))
    {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let (lo, hi, ticks) = match panel.scale {
        Scale::Linear => {
            let hi = if hi <= lo { lo + 1.0 } else { hi };
            let mut ticks = nice_ticks(lo, hi, 5);
            if panel.integer {
                ticks.retain(|t| t.fract() == 0.0);
            }
            let top_tick = ticks.last().copied().unwrap_or(hi);
            (lo, top_tick.max(hi), ticks)
        }
        Scale::Log => {
            let lo = 10f64.powf(lo.log10().floor());
            let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
            let mut ticks = Vec::new();
            let mut decade = lo;
            while decade <= hi * 1.0001 {
                for m in [1.0, 2.0, 5.0] {
                    let t = decade * m;
                    if t <= hi * 1.0001 {
                        ticks.push(t);
                    }
                }
                decade *= 10.0;
            }
            (lo, hi, ticks)
        }
    };
    let y_of = |v: f64| -> f64 {
        let f = match panel.scale {
            Scale::Linear => (v - lo) / (hi - lo),
            Scale::Log => (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()),
        };
        bottom - f.clamp(0.0, 1.0) * (bottom - top)
    };

    for &tick in &ticks {
        let y = y_of(tick);
        let major = panel.scale == Scale::Linear || (tick.log10().fract().abs() < 1e-9);
        let stroke = if major { "#e6e6e6" } else { "#f3f3f3" };
        let _ = writeln!(
            svg,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
            LEFT + PLOT_WIDTH
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            (panel.unit)(tick)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle" font-weight="bold">{}</text>"#,
        (top + bottom) / 2.0,
        escape(panel.label)
    );

    if let Some((value, label)) = &panel.target {
        let y = y_of(*value);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#333" stroke-width="1.2" stroke-dasharray="6 4"/>"##,
            LEFT + PLOT_WIDTH
        );
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"##,
            LEFT + PLOT_WIDTH - 6.0,
            y - 5.0,
            escape(label)
        );
    }

    for series in &panel.series {
        let d = path(xs, &series.values, x_of, &y_of);
        if !d.is_empty() {
            let _ = writeln!(
                svg,
                r#"<path d="{d}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round"/>"#,
                series.color, series.width
            );
        }
    }

    // Legend, top left inside the plot.
    let mut x = LEFT + 10.0;
    let y = top + 16.0;
    let entries: Vec<(&str, &str, f64, bool)> = panel
        .series
        .iter()
        .map(|s| (s.name, s.color, s.width, false))
        .chain(panel.target.as_ref().map(|_| ("target", "#333", 1.2, true)))
        .collect();
    let legend_width: f64 = entries
        .iter()
        .map(|(name, ..)| legend_entry_width(name))
        .sum();
    let _ = writeln!(
        svg,
        r#"<rect x="{:.1}" y="{:.1}" width="{legend_width:.1}" height="20" fill="white" fill-opacity="0.85"/>"#,
        x - 4.0,
        y - 13.0
    );
    for (name, color, width, dashed) in entries {
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="{}"{dash}/>"#,
            y - 4.0,
            x + 22.0,
            y - 4.0,
            width.max(2.0)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{y:.1}">{}</text>"#,
            x + 27.0,
            escape(name)
        );
        x += legend_entry_width(name);
    }
}

/// A legend entry's line, its name (about 7.5 px a character at 12 px) and a gap.
fn legend_entry_width(name: &str) -> f64 {
    28.0 + 7.5 * name.chars().count() as f64 + 18.0
}

/// An SVG path through the points, reduced per pixel column (M4), broken where
/// a value is missing.
fn path(
    xs: &[f64],
    ys: &[Option<f64>],
    x_of: &dyn Fn(f64) -> f64,
    y_of: &dyn Fn(f64) -> f64,
) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    let mut bucket: Option<(i64, Vec<usize>)> = None;
    let flush = |d: &mut String, pen_down: &mut bool, members: &[usize]| {
        let Some(&first) = members.first() else {
            return;
        };
        let last = *members.last().unwrap_or(&first);
        let value = |i: usize| ys[i].unwrap_or(0.0);
        let lowest = members
            .iter()
            .copied()
            .min_by(|&a, &b| value(a).total_cmp(&value(b)))
            .unwrap_or(first);
        let highest = members
            .iter()
            .copied()
            .max_by(|&a, &b| value(a).total_cmp(&value(b)))
            .unwrap_or(first);
        let mut picks = [first, lowest, highest, last];
        picks.sort_unstable();
        let mut previous = None;
        for i in picks {
            if previous == Some(i) {
                continue;
            }
            previous = Some(i);
            let command = if *pen_down { 'L' } else { 'M' };
            let _ = write!(d, "{command}{:.1},{:.1}", x_of(xs[i]), y_of(value(i)));
            *pen_down = true;
        }
    };
    for (i, y) in ys.iter().enumerate() {
        match y {
            Some(v) if v.is_finite() => {
                let column = x_of(xs[i]).floor() as i64;
                match &mut bucket {
                    Some((c, members)) if *c == column => members.push(i),
                    _ => {
                        if let Some((_, members)) = bucket.take() {
                            flush(&mut d, &mut pen_down, &members);
                        }
                        bucket = Some((column, vec![i]));
                    }
                }
            }
            _ => {
                if let Some((_, members)) = bucket.take() {
                    flush(&mut d, &mut pen_down, &members);
                }
                pen_down = false;
            }
        }
    }
    if let Some((_, members)) = bucket.take() {
        flush(&mut d, &mut pen_down, &members);
    }
    d
}

/// Round tick values (1, 2, 2.5 or 5 × 10ⁿ apart) covering [lo, hi], about `count` of them.
fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let rough = (hi - lo) / count.max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).floor() * step;
    let mut ticks = Vec::new();
    let mut k = 0.0;
    loop {
        let t = first + k * step;
        if t >= lo - step * 1e-9 {
            ticks.push((t / step).round() * step);
        }
        if t >= hi - step * 1e-9 {
            break;
        }
        k += 1.0;
    }
    ticks
}

/// The time axis: from the run's start (a timeline's first row ends the first
/// interval) to its end, or the rows' own span for a cropped timeline.
fn time_range(rows: &[TimelineRow]) -> (f64, f64) {
    let (first, last) = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) => (a.seconds, b.seconds),
        _ => return (0.0, 1.0),
    };
    let step = rows.get(1).map_or(first, |r| r.seconds - first);
    let start = (first - step).max(0.0);
    if last > start {
        (start, last)
    } else {
        (start, start + 1.0)
    }
}

/// Ticks (seconds, label) and the axis title. Up to three days, the labels are
/// a clock since the start (`14d 10:30` past the first day); beyond, days.
fn time_ticks(t0: f64, t1: f64) -> (Vec<(f64, String)>, &'static str) {
    let span = t1 - t0;
    if span > 3.0 * 86_400.0 {
        let ticks = nice_ticks(t0 / 86_400.0, t1 / 86_400.0, 12)
            .into_iter()
            .map(|d| (d * 86_400.0, format_count(d)))
            .collect();
        return (ticks, "time since start (days)");
    }
    let step = [
        60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10_800.0, 21_600.0, 43_200.0,
    ]
    .into_iter()
    .find(|step| span / step <= 12.0)
    .unwrap_or(86_400.0);
    let with_day = t1 >= 86_400.0;
    let mut ticks = Vec::new();
    let mut t = (t0 / step).ceil() * step;
    while t <= t1 + 1e-6 {
        let (day, rest) = ((t / 86_400.0).floor(), t.rem_euclid(86_400.0));
        let clock = format!(
            "{}:{:02}",
            (rest / 3600.0).floor(),
            ((rest % 3600.0) / 60.0).round()
        );
        let label = if with_day {
            format!("{day}d {clock}")
        } else {
            clock
        };
        ticks.push((t, label));
        t += step;
    }
    let name = if with_day {
        "time since start (day, h:mm)"
    } else {
        "time since start (h:mm)"
    };
    (ticks, name)
}

fn format_count(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    if v.abs() >= 1000.0 {
        format!("{}k", trim(format!("{:.2}", v / 1000.0)))
    } else {
        trim(format!("{v:.2}"))
    }
}

fn format_seconds(v: f64) -> String {
    if v >= 1.0 {
        format!("{} s", format_count(v))
    } else {
        format!("{} ms", format_count(v * 1000.0))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(
            nice_ticks(0.0, 2300.0, 5),
            vec![0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0]
        );
        assert_eq!(
            nice_ticks(0.0, 18.0, 12),
            (0..=18).step_by(2).map(f64::from).collect::<Vec<_>>()
        );
        assert_eq!(format_count(2500.0), "2.5k");
        assert_eq!(format_seconds(0.5), "500 ms");
        assert_eq!(format_seconds(10.0), "10 s");
    }

    #[test]
    fn the_time_axis_reads_as_a_clock_or_in_days() {
        let (ticks, name) = time_ticks(0.0, 2400.0);
        assert_eq!(name, "time since start (h:mm)");
        let labels: Vec<&str> = ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "0:00", "0:05", "0:10", "0:15", "0:20", "0:25", "0:30", "0:35", "0:40"
            ]
        );
        let (ticks, _) = time_ticks(
            14.0 * 86_400.0 + 9.5 * 3600.0,
            14.0 * 86_400.0 + 12.5 * 3600.0,
        );
        assert_eq!(ticks[0].1, "14d 9:30");
        assert_eq!(ticks.last().unwrap().1, "14d 12:30");
        let (ticks, name) = time_ticks(0.0, 18.0 * 86_400.0);
        assert_eq!(name, "time since start (days)");
        assert_eq!(ticks[0].1, "0");
        assert_eq!(ticks.last().unwrap().1, "18");
    }

    #[test]
    fn many_rows_are_reduced_per_pixel_column_keeping_the_extremes() {
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(f64::from).collect();
        // One spike in a flat line must survive the reduction.
        let ys: Vec<Option<f64>> = (0..n)
            .map(|i| Some(if i == 54_321 { 100.0 } else { 1.0 }))
            .collect();
        let x_of = |t: f64| t / f64::from(n) * 1000.0;
        let d = path(&xs, &ys, &x_of, &|v| 200.0 - v);
        let points = d.matches(['M', 'L']).count();
        assert!(points <= 4 * 1001, "{points} points");
        assert!(d.contains(",100.0"), "the spike (y = 200 − 100) is drawn");
        // A gap lifts the pen.
        let gap = path(
            &[0.0, 1.0, 2.0, 3.0],
            &[Some(1.0), None, Some(1.0), Some(2.0)],
            &|t| t * 100.0,
            &|v| v,
        );
        assert_eq!(gap.matches('M').count(), 2, "{gap}");
    }

    #[test]
    fn the_chart_has_its_panels_labels_and_target() {
        let rows: Vec<TimelineRow> = (1..=40)
            .map(|i| TimelineRow {
                seconds: f64::from(i) * 15.0,
                offered_rps: Some(f64::from(i) * 10.0),
                served_rps: Some(f64::from(i) * 10.0),
                instances: Some(1 + i as u32 / 10),
                ready_instances: Some(1 + i as u32 / 10),
                cpu: Some(0.5),
                p95_seconds: Some(0.1 + f64::from(i) / 100.0),
                desired: Some(1 + i as u32 / 10),
                decision: Some("within_tolerance".into()),
            })
            .collect();
        let meta = TimelineMeta {
            title: Some("A & B".into()),
            target_p95_seconds: Some(0.5),
            target_cpu: Some(0.7),
        };
        let svg = render_svg(&rows, &meta);
        assert!(svg.starts_with("<svg"), "{svg}");
        for expected in [
            "A &amp; B",
            "requests/s",
            "instances",
            "CPU (% of allowance)",
            "p95 latency",
            "target 500 ms",
            "target 70 %",
            "time since start (h:mm)",
            "offered",
            "ready",
        ] {
            assert!(svg.contains(expected), "missing {expected}");
        }
        // Without a CPU column (a real-cluster replay may lack it) the panel goes.
        let rows: Vec<TimelineRow> = rows
            .into_iter()
            .map(|r| TimelineRow { cpu: None, ..r })
            .collect();
        assert!(!render_svg(&rows, &meta).contains("CPU (% of allowance)"));
    }
}
