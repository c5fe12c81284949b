//! `results.png`: one group of horizontal bars per scenario, each system's result
//! relative to that scenario's baseline (1.0 = as good as the baseline, more =
//! better; times and bytes inverted), since the rows' units differ.
//!
//! Drawn with plotters' bitmap backend. Text needs a TrueType font: plotters'
//! `ab_glyph` feature with DejaVu Sans read at run time from Debian's
//! `fonts-dejavu-core` (scripts/bench installs it), so nothing is vendored and no
//! system font library (fontconfig, freetype) is linked.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::Row;

pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const SYSTEMS: [(&str, RGBColor); 4] = [
    ("baseline", RGBColor(150, 150, 150)),
    ("inputfs", RGBColor(31, 119, 180)),
    ("rclone", RGBColor(255, 127, 14)),
    ("s3fs", RGBColor(44, 160, 44)),
];

/// Bars longer than this (times the baseline) are cut, their value written.
const MAX_RATIO: f64 = 3.0;

fn register_font() -> Result<()> {
    let bytes = std::fs::read(FONT_PATH)
        .with_context(|| format!("read {FONT_PATH} (Debian package fonts-dejavu-core)"))?;
    // Registered once per run: the font table wants 'static bytes.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT_PATH} is not a usable TrueType font"))
}

/// Draw the chart of `rows` into `path` (PNG).
pub fn draw(path: &Path, title: &str, rows: &[Row]) -> Result<()> {
    register_font()?;
    let rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.cells.contains_key("baseline"))
        .collect();
    let n = rows.len().max(1) as f64;
    let height = 140 + 80 * rows.len() as u32;
    let root = BitMapBackend::new(path, (1200, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("chart: {e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(330)
        .build_cartesian_2d(0f64..MAX_RATIO * 1.12, 0f64..n)
        .map_err(|e| anyhow!("chart: {e}"))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("relative to the baseline (1.0 = baseline; >1 better)")
        .x_label_formatter(&|x| format!("{x:.1}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow!("chart: {e}"))?;
    let bar = 0.8 / SYSTEMS.len() as f64;
    for (s, (system, color)) in SYSTEMS.iter().enumerate() {
        let bars: Vec<(f64, f64, f64)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let ratio = if *system == "baseline" {
                    Some(1.0)
                } else {
                    r.vs_baseline(system)
                }?;
                // Row 0 at the top.
                let top = n - i as f64 - 0.1 - s as f64 * bar;
                Some((ratio, top - bar, top))
            })
            .collect();
        chart
            .draw_series(bars.iter().map(|&(ratio, y0, y1)| {
                Rectangle::new([(0.0, y0), (ratio.min(MAX_RATIO), y1)], color.filled())
            }))
            .map_err(|e| anyhow!("chart: {e}"))?
            .label(*system)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart
            .draw_series(bars.iter().map(|&(ratio, y0, y1)| {
                Text::new(
                    format!("{ratio:.2}"),
                    (ratio.min(MAX_RATIO) + 0.02, (y0 + y1) / 2.0),
                    ("sans-serif", 12)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )
            }))
            .map_err(|e| anyhow!("chart: {e}"))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, 0.0), (1.0, n)],
            BLACK,
        )))
        .map_err(|e| anyhow!("chart: {e}"))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("chart: {e}"))?;
    // Scenario names, right-aligned left of each group, in pixel coordinates.
    for (i, r) in rows.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(0.0, n - i as f64 - 0.5));
        root.draw(&Text::new(
            format!("{} ({})", r.title, r.unit),
            (px - 10, py),
            ("sans-serif", 14)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(|e| anyhow!("chart: {e}"))?;
    }
    root.present()
        .map_err(|e| anyhow!("write {}: {e}", path.display()))?;
    Ok(())
}
