//! Line charts for `--plot` options (schedule tables, per-timestep NLL terms, training loss).
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`assets/`, Bitstream Vera license),
//! so plotting needs no system fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result};
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is embedded and valid, so this cannot fail at run time.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One named curve.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// One panel of a figure.
pub struct Panel {
    /// Panel title.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Use a log10 y axis (all y must be > 0).
    pub log_y: bool,
    /// The curves.
    pub series: Vec<Series>,
}

/// Draws `panels` side by side into a PNG at `path`, written atomically (a temporary file
/// in the same directory, synced, then renamed: a failed write leaves the previous file).
pub fn line_panels(path: &Path, panels: &[Panel]) -> Result<()> {
    register_font();
    let (width, height) = ((520 * panels.len() as u32).max(520), 420);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(areas) {
            draw_panel(panel, &area).with_context(|| format!("drawing panel {:?}", panel.title))?;
        }
        root.present().context("rendering the plot")?;
    }
    let image = image::RgbImage::from_raw(width, height, pixels)
        .expect("the buffer holds width × height RGB pixels");
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the plot as PNG")?;
    ddpm_io::write_atomic(path, png).with_context(|| format!("writing plot {}", path.display()))?;
    Ok(())
}

fn bounds(panel: &Panel) -> (f64, f64, f64, f64) {
    let pts = panel.series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if !y.is_finite() || (panel.log_y && y <= 0.0) {
            continue;
        }
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return (0.0, 1.0, 0.1, 1.0);
    }
    if y0 == y1 {
        y1 = y0 + y0.abs().max(1e-12);
    }
    (x0, x1.max(x0 + 1.0), y0, y1)
}

/// Tick label: integers when the axis spans more than 10 units.
fn format_tick(x: f64, span: f64) -> String {
    if span > 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (x0, x1, y0, y1) = bounds(panel);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(panel.x_label.as_str())
                .y_desc(panel.y_label.as_str())
                .label_style(("sans-serif", 13))
                .x_label_formatter(&|x| format_tick(*x, x1 - x0))
                .draw()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            for (i, s) in panel.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let pts = s
                    .points
                    .iter()
                    .copied()
                    .filter(|&(_, y)| y.is_finite() && (!panel.log_y || y > 0.0));
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
            }
            if panel.series.len() > 1 {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 13))
                    .draw()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            }
        }};
    }
    if panel.log_y {
        finish!(
            builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
        );
    } else {
        let pad = (y1 - y0) * 0.05;
        finish!(
            builder
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?
        );
    }
    Ok(())
}
