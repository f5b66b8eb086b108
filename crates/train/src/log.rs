//! Loss logs: one CSV row per logged step, and a PNG curve drawn from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{Error, Result};

/// A CSV of `step,name1,name2,...` that survives resumption: reopening at step s drops
/// rows past s, so a resumed run continues the curve without duplicates.
#[derive(Debug)]
pub struct LossLog {
    path: PathBuf,
    columns: Vec<String>,
    rows: Vec<(usize, Vec<f64>)>,
}

impl LossLog {
    /// Opens or creates the log at `path` with `columns`, keeping rows up to `resume_step`.
    pub fn open(path: &Path, columns: &[&str], resume_step: usize) -> Result<Self> {
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        let mut rows = Vec::new();
        if let Ok(text) = std::fs::read_to_string(path) {
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let expected = format!("step,{}", columns.join(","));
            if header == expected {
                for line in lines {
                    let mut fields = line.split(',');
                    let step = fields.next().and_then(|s| s.parse::<usize>().ok());
                    let values: Option<Vec<f64>> = fields.map(|f| f.parse().ok()).collect();
                    if let (Some(step), Some(values)) = (step, values)
                        && step <= resume_step
                        && values.len() == columns.len()
                    {
                        rows.push((step, values));
                    }
                }
            }
        }
        let log = Self {
            path: path.to_owned(),
            columns,
            rows,
        };
        log.rewrite()?;
        Ok(log)
    }

    fn rewrite(&self) -> Result<()> {
        let mut text = format!("step,{}\n", self.columns.join(","));
        for (step, values) in &self.rows {
            let fields: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            text.push_str(&format!("{step},{}\n", fields.join(",")));
        }
        racm3_data::write_atomic(&self.path, text.as_bytes())?;
        Ok(())
    }

    /// Appends a row; `values` follow the column order.
    pub fn push(&mut self, step: usize, values: &[f64]) -> Result<()> {
        let fields: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(Error::io(&self.path))?;
        writeln!(file, "{step},{}", fields.join(",")).map_err(Error::io(&self.path))?;
        self.rows.push((step, values.to_vec()));
        Ok(())
    }

    /// The rows so far.
    pub fn rows(&self) -> &[(usize, Vec<f64>)] {
        &self.rows
    }

    /// Draws every column against the step as a PNG, one panel per column. Labels need a
    /// TrueType font: DejaVu Sans where the system has it; without one, the panels are
    /// drawn unlabelled.
    pub fn plot(&self, png: &Path) -> Result<()> {
        let labelled = register_font();
        let panels = self.columns.len().max(1);
        let plot_error = |err: String| Error::Plot {
            path: png.to_owned(),
            message: err,
        };
        let temp = png.with_extension("tmp.png");
        {
            let root = BitMapBackend::new(&temp, (640, 220 * panels as u32)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| plot_error(e.to_string()))?;
            let areas = root.split_evenly((panels, 1));
            for (column, area) in areas.iter().enumerate() {
                let points: Vec<(f64, f64)> = self
                    .rows
                    .iter()
                    .map(|(step, values)| (*step as f64, values[column]))
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                let (x_max, y_min, y_max) = points.iter().fold(
                    (1.0f64, f64::INFINITY, f64::NEG_INFINITY),
                    |(x, lo, hi), &(px, py)| (x.max(px), lo.min(py), hi.max(py)),
                );
                let (y_min, y_max) = if y_min < y_max {
                    (y_min, y_max)
                } else {
                    (y_min.min(0.0) - 1.0, y_max.max(0.0) + 1.0)
                };
                let mut builder = ChartBuilder::on(area);
                builder
                    .margin(8)
                    .x_label_area_size(24)
                    .y_label_area_size(48);
                if labelled {
                    builder.caption(&self.columns[column], ("sans-serif", 16));
                }
                let mut chart = builder
                    .build_cartesian_2d(0.0..x_max, y_min..y_max)
                    .map_err(|e| plot_error(e.to_string()))?;
                let mut mesh = chart.configure_mesh();
                if !labelled {
                    mesh.disable_x_mesh()
                        .disable_y_mesh()
                        .x_labels(0)
                        .y_labels(0);
                }
                mesh.draw().map_err(|e| plot_error(e.to_string()))?;
                chart
                    .draw_series(LineSeries::new(points, &BLUE))
                    .map_err(|e| plot_error(e.to_string()))?;
            }
            root.present().map_err(|e| plot_error(e.to_string()))?;
        }
        std::fs::rename(&temp, png).map_err(Error::io(png))
    }
}

/// Registers DejaVu Sans for plot labels, once; tells whether a font is available.
fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
        ];
        candidates.iter().any(|path| {
            let Ok(bytes) = std::fs::read(path) else {
                return false;
            };
            // plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reopening at an earlier step drops later rows; the plot is a PNG that decodes.
    #[test]
    fn resumes_without_duplicates_and_plots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.csv");
        let mut log = LossLog::open(&path, &["loss", "psnr"], 0).unwrap();
        for step in 1..=5 {
            log.push(step, &[1.0 / step as f64, 10.0 + step as f64])
                .unwrap();
        }
        let log = LossLog::open(&path, &["loss", "psnr"], 3).unwrap();
        assert_eq!(log.rows().len(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        let png = dir.path().join("loss.png");
        log.plot(&png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
