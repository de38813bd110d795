//! The overview's chart, laid out on the server: entries per day stacked by
//! action, as plain numbers the template writes into SVG rectangles (no
//! script, no library). The same numbers fill the table beside it for
//! screen readers and printing.

use crate::i18n::Labels;
use std::collections::BTreeMap;

/// Actions drawn as series of their own; the rest are stacked as "other".
const SERIES: usize = 6;
/// Colours that stay apart for colour-blind readers (Okabe–Ito), then grey for "other".
const PALETTE: [&str; SERIES] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
];
const OTHER: &str = "#9A9A9A";

pub const WIDTH: u32 = 760;
pub const HEIGHT: u32 = 260;
const LEFT: u32 = 48;
const RIGHT: u32 = 12;
const TOP: u32 = 14;
const BOTTOM: u32 = 30;

pub struct Series {
    pub name: String,
    pub color: &'static str,
}

pub struct Segment {
    pub y: u32,
    pub h: u32,
    pub color: &'static str,
    /// The tooltip: date, series, count.
    pub title: String,
}

pub struct Bar {
    pub x: u32,
    pub w: u32,
    pub label: String,
    pub label_x: u32,
    pub segments: Vec<Segment>,
}

pub struct Tick {
    pub y: u32,
    pub label: u64,
}

pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub plot_left: u32,
    pub plot_right: u32,
    pub plot_bottom: u32,
    pub label_y: u32,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub series: Vec<Series>,
    /// The table: date, one count per series, total.
    pub rows: Vec<(String, Vec<u64>, u64)>,
}

/// A round step giving about four gridlines up to `max`.
fn step_for(max: u64) -> u64 {
    let rough = (max as f64 / 4.0).max(1.0);
    let magnitude = 10f64.powi(rough.log10().floor() as i32);
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    step.max(1.0) as u64
}

pub fn build(days: &[(time::Date, BTreeMap<String, u64>)], t: &Labels) -> Chart {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, counts) in days {
        for (action, n) in counts {
            *totals.entry(action).or_default() += n;
        }
    }
    let mut ranked: Vec<(&str, u64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let named: Vec<&str> = ranked.iter().take(SERIES).map(|(a, _)| *a).collect();
    let has_other = ranked.len() > SERIES;
    let mut series: Vec<Series> = named
        .iter()
        .zip(PALETTE)
        .map(|(a, color)| Series {
            name: t.action(a),
            color,
        })
        .collect();
    if has_other {
        series.push(Series {
            name: t.other_actions.to_string(),
            color: OTHER,
        });
    }

    let rows: Vec<(String, Vec<u64>, u64)> = days
        .iter()
        .map(|(date, counts)| {
            let mut per: Vec<u64> = named
                .iter()
                .map(|a| counts.get(*a).copied().unwrap_or(0))
                .collect();
            if has_other {
                per.push(
                    counts
                        .iter()
                        .filter(|(a, _)| !named.contains(&a.as_str()))
                        .map(|(_, n)| n)
                        .sum(),
                );
            }
            let total = per.iter().sum();
            (date.to_string(), per, total)
        })
        .collect();

    let max = rows.iter().map(|r| r.2).max().unwrap_or(0);
    let step = step_for(max);
    let top = max.div_ceil(step).max(1) * step;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let scale = |n: u64| (n as f64 * plot_h as f64 / top as f64).round() as u32;
    let ticks = (0..=top / step)
        .map(|i| Tick {
            y: HEIGHT - BOTTOM - scale(i * step),
            label: i * step,
        })
        .collect();
    let slot = plot_w as f64 / rows.len().max(1) as f64;
    let bars = rows
        .iter()
        .enumerate()
        .map(|(i, (date, per, _))| {
            let x = LEFT as f64 + slot * i as f64 + slot * 0.15;
            let w = (slot * 0.7).round() as u32;
            let mut base = 0u64;
            let mut segments = Vec::new();
            for (n, s) in per.iter().zip(&series) {
                if *n == 0 {
                    continue;
                }
                let y0 = HEIGHT - BOTTOM - scale(base);
                base += n;
                let y1 = HEIGHT - BOTTOM - scale(base);
                segments.push(Segment {
                    y: y1,
                    h: (y0 - y1).max(1),
                    color: s.color,
                    title: format!("{date} · {}: {n}", s.name),
                });
            }
            Bar {
                x: x.round() as u32,
                w,
                label: date.get(5..).unwrap_or(date).to_string(),
                label_x: (x + slot * 0.35).round() as u32,
                segments,
            }
        })
        .collect();
    Chart {
        width: WIDTH,
        height: HEIGHT,
        plot_left: LEFT,
        plot_right: WIDTH - RIGHT,
        plot_bottom: HEIGHT - BOTTOM,
        label_y: HEIGHT - BOTTOM + 18,
        bars,
        ticks,
        series,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(step_for(0), 1);
        assert_eq!(step_for(3), 1);
        assert_eq!(step_for(9), 5);
        assert_eq!(step_for(40), 10);
        assert_eq!(step_for(1234), 500);
    }

    #[test]
    fn bars_stack_up_to_their_totals() {
        let d = time::macros::date!(2026 - 12 - 01);
        let mut counts = BTreeMap::new();
        counts.insert("records_delivered".to_string(), 30);
        counts.insert("batch_pushed".to_string(), 10);
        let chart = build(&[(d, counts)], &crate::i18n::EN);
        assert_eq!(chart.series.len(), 2);
        assert_eq!(chart.rows[0].2, 40);
        let bar = &chart.bars[0];
        let top = bar.segments.iter().map(|s| s.y).min().unwrap();
        let bottom = bar.segments.iter().map(|s| s.y + s.h).max().unwrap();
        assert_eq!(bottom, chart.plot_bottom);
        assert_eq!(top, chart.ticks.last().unwrap().y);
    }
}
