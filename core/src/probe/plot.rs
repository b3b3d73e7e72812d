//! PNG plots of low-data learning curves: one line per method over a log-scaled number of training rows, each
//! point with a vertical bar for its spread.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (the `dejavu` crate), registered with plotters'
//! `ab_glyph` renderer, so plotting needs no system fonts or fontconfig. The image is rendered into memory and
//! encoded with the `png` crate, so a failed plot never leaves a half-written file behind a successful return.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::backend::RGBPixel;
use plotters::prelude::*;

/// Image width in pixels.
const WIDTH: u32 = 900;
/// Image height in pixels.
const HEIGHT: u32 = 600;
/// The family name plotters' default text styles ask for; registering the embedded font under it makes every
/// piece of text (title, axis descriptions, ticks, legend) use it.
const FONT_FAMILY: &str = "sans-serif";

/// Okabe–Ito colours (minus black, which the axes use): distinguishable with the common colour-vision
/// deficiencies. Series beyond these fall back to plotters' 99-colour palette.
const SERIES_COLOURS: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
];

/// One point of a learning curve: the metric at one training-set size, with the spread (for example a
/// bootstrap interval, or the range over seeds) drawn as a vertical bar from `low` to `high`.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// Number of training rows (plotted on a log scale, so at least 1).
    pub train_rows: usize,
    /// The metric's central value.
    pub mean: f64,
    /// Lower end of the spread.
    pub low: f64,
    /// Upper end of the spread.
    pub high: f64,
}

/// One method's learning curve. Points need not be sorted; they are joined in order of `train_rows`.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveSeries {
    /// Legend entry; an empty label leaves the series out of the legend.
    pub label: String,
    /// The curve's points.
    pub points: Vec<CurvePoint>,
}

/// Why a plot could not be written. Input errors name the series (index and label) and the point index.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No series at all.
    #[error("no series to plot")]
    NoSeries,
    /// A series without points.
    #[error("series {series} ({label:?}) has no points")]
    EmptySeries {
        /// Index of the series.
        series: usize,
        /// Its label.
        label: String,
    },
    /// A point with zero training rows, which a log-scaled axis cannot show.
    #[error("series {series} ({label:?}) point {point} has 0 training rows")]
    ZeroRows {
        /// Index of the series.
        series: usize,
        /// Its label.
        label: String,
        /// Index of the point within the series.
        point: usize,
    },
    /// A NaN or infinite `mean`, `low` or `high`.
    #[error("series {series} ({label:?}) point {point} has a non-finite {field}: {value}")]
    NonFinite {
        /// Index of the series.
        series: usize,
        /// Its label.
        label: String,
        /// Index of the point within the series.
        point: usize,
        /// Which field (`mean`, `low` or `high`).
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A spread whose lower end lies above its upper end.
    #[error("series {series} ({label:?}) point {point} has low {low} above high {high}")]
    InvertedSpread {
        /// Index of the series.
        series: usize,
        /// Its label.
        label: String,
        /// Index of the point within the series.
        point: usize,
        /// The lower end given.
        low: f64,
        /// The upper end given.
        high: f64,
    },
    /// Finite values so far apart that the y axis span overflows `f64`.
    #[error("y values from {low} to {high} span more than an f64 can hold")]
    YRange {
        /// Smallest value to show.
        low: f64,
        /// Largest value to show.
        high: f64,
    },
    /// The embedded font could not be registered with plotters.
    #[error("the embedded DejaVu Sans font could not be registered with plotters")]
    Font,
    /// Plotters failed while drawing the plot for `path`.
    #[error("drawing the plot for {path}: {message}")]
    Draw {
        /// The file the plot was for.
        path: PathBuf,
        /// Plotters' message.
        message: String,
    },
    /// The rendered image could not be encoded as PNG.
    #[error("encoding the PNG for {path}: {source}")]
    Encode {
        /// The file the plot was for.
        path: PathBuf,
        /// The encoder's error.
        source: png::EncodingError,
    },
    /// The PNG could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file that could not be written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Writes a 900×600 PNG of learning curves to `path`: training rows on a log-scaled x axis, `metric` on the
/// y axis, `title` above, one coloured line per series with a marker and a vertical spread bar at each point,
/// and a legend of the non-empty series labels.
///
/// Input is checked before anything is drawn: there must be at least one series, every series needs a
/// point, every point at least one training row, finite `mean`/`low`/`high`, and `low <= high`. `mean` is not
/// required to lie between `low` and `high`, since a percentile bootstrap interval need not contain the point
/// estimate. Degenerate ranges (one training-set size, or every value equal) are padded so the plot still
/// has extent.
///
/// # Errors
/// A [`PlotError`] naming the offending series and point for bad input, or the path for drawing, encoding
/// and write failures.
pub fn plot_learning_curves(path: &Path, title: &str, metric: &str, series: &[CurveSeries]) -> Result<(), PlotError> {
    validate(series)?;
    let ranges = Ranges::of(series)?;
    register_font()?;
    let pixels = render(title, metric, series, &ranges).map_err(|message| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    })?;
    let encoded = encode_png(&pixels).map_err(|source| PlotError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, encoded).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn validate(series: &[CurveSeries]) -> Result<(), PlotError> {
    if series.is_empty() {
        return Err(PlotError::NoSeries);
    }
    for (s, curve) in series.iter().enumerate() {
        let label = || curve.label.clone();
        if curve.points.is_empty() {
            return Err(PlotError::EmptySeries {
                series: s,
                label: label(),
            });
        }
        for (p, point) in curve.points.iter().enumerate() {
            if point.train_rows == 0 {
                return Err(PlotError::ZeroRows {
                    series: s,
                    label: label(),
                    point: p,
                });
            }
            for (field, value) in [("mean", point.mean), ("low", point.low), ("high", point.high)] {
                if !value.is_finite() {
                    return Err(PlotError::NonFinite {
                        series: s,
                        label: label(),
                        point: p,
                        field,
                        value,
                    });
                }
            }
            if point.low > point.high {
                return Err(PlotError::InvertedSpread {
                    series: s,
                    label: label(),
                    point: p,
                    low: point.low,
                    high: point.high,
                });
            }
        }
    }
    Ok(())
}

/// The axis ranges, padded so that nothing sits on the frame and a single value still gets an axis.
struct Ranges {
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
}

impl Ranges {
    /// Expects validated, non-empty input.
    fn of(series: &[CurveSeries]) -> Result<Self, PlotError> {
        let points = || series.iter().flat_map(|s| s.points.iter());
        let min_rows = points().map(|p| p.train_rows).min().unwrap_or(1) as f64;
        let max_rows = points().map(|p| p.train_rows).max().unwrap_or(1) as f64;
        // Pad in log space, proportionally to the decades shown, with a floor of a tenth of a decade on each side
        // so that a single training-set size still gets an axis.
        let pad = 10f64.powf((0.05 * (max_rows / min_rows).log10()).max(0.1));
        let x = min_rows / pad..max_rows * pad;

        // Include the means too: they need not lie inside the spread.
        let low = points().map(|p| p.low.min(p.mean)).fold(f64::INFINITY, f64::min);
        let high = points().map(|p| p.high.max(p.mean)).fold(f64::NEG_INFINITY, f64::max);
        let span = high - low;
        let scale = low.abs().max(high.abs());
        // A span that is zero, or lost in rounding next to the values' magnitude, would give the axis no height;
        // pad those by 5 % of the magnitude instead (or a fixed 0.05 around zero).
        let y_pad = if span > scale * 1e-9 {
            span * 0.05
        } else if scale > 1e-9 {
            scale * 0.05
        } else {
            0.05
        };
        let (y_low, y_high) = (low - y_pad, high + y_pad);
        if !(y_low.is_finite() && y_high.is_finite() && y_low < y_high) {
            return Err(PlotError::YRange { low, high });
        }
        Ok(Self { x, y: y_low..y_high })
    }
}

/// Registers the embedded font once per process; later calls reuse the first outcome.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, dejavu::sans::regular()).is_ok()
    });
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

fn series_colour(index: usize) -> RGBColor {
    SERIES_COLOURS.get(index).copied().unwrap_or_else(|| {
        let (r, g, b) = Palette99::COLORS[index % Palette99::COLORS.len()];
        RGBColor(r, g, b)
    })
}

/// Decimal places for y tick labels: enough to tell ticks (about a tenth of the span apart) from each other.
fn y_decimals(span: f64) -> usize {
    (1.0 - span.log10().floor()).clamp(0.0, 8.0) as usize
}

/// Draws the plot into a row-major RGB buffer; plotters' errors come back as their messages.
fn render(title: &str, metric: &str, series: &[CurveSeries], ranges: &Ranges) -> Result<Vec<u8>, String> {
    let mut pixels = vec![255u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut pixels, (WIDTH, HEIGHT))
            .map_err(|e| e.to_string())?;
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;

        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT_FAMILY, 26))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(75)
            .build_cartesian_2d(ranges.x.clone().log_scale(), ranges.y.clone())
            .map_err(|e| e.to_string())?;

        let decimals = y_decimals(ranges.y.end - ranges.y.start);
        let x_format = |v: &f64| format!("{v:.0}");
        let y_format = |v: &f64| format!("{v:.decimals$}");
        chart
            .configure_mesh()
            .x_desc("training rows")
            .y_desc(metric)
            .axis_desc_style((FONT_FAMILY, 18))
            .label_style((FONT_FAMILY, 14))
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .light_line_style(BLACK.mix(0.05))
            .bold_line_style(BLACK.mix(0.15))
            .draw()
            .map_err(|e| e.to_string())?;

        for (index, curve) in series.iter().enumerate() {
            let colour = series_colour(index);
            let mut points: Vec<&CurvePoint> = curve.points.iter().collect();
            points.sort_by_key(|p| p.train_rows);

            let line = chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.train_rows as f64, p.mean)),
                    colour.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            if !curve.label.is_empty() {
                line.label(curve.label.as_str()).legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (20, 0)], colour.stroke_width(2))
                        + Circle::new((10, 0), 4, colour.filled())
                });
            }
            // ErrorBar draws the bar, its caps and a filled marker (radius = half the cap width) at the mean.
            chart
                .draw_series(points.iter().map(|p| {
                    ErrorBar::new_vertical(
                        p.train_rows as f64,
                        p.low,
                        p.mean,
                        p.high,
                        colour.filled().stroke_width(2),
                        10,
                    )
                }))
                .map_err(|e| e.to_string())?;
        }

        if series.iter().any(|s| !s.label.is_empty()) {
            chart
                .configure_series_labels()
                // Learning curves rise to the right, so the lower right corner is the one most often empty.
                .position(SeriesLabelPosition::LowerRight)
                .label_font((FONT_FAMILY, 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(pixels)
}

fn encode_png(pixels: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut encoded = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut encoded, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(pixels)?;
        writer.finish()?;
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded RGB image.
    struct Image {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    }

    impl Image {
        fn read(path: &Path) -> Image {
            let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
            let mut reader = png::Decoder::new(file).read_info().unwrap();
            let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
            let frame = reader.next_frame(&mut rgb).unwrap();
            assert_eq!(frame.color_type, png::ColorType::Rgb);
            assert_eq!(frame.bit_depth, png::BitDepth::Eight);
            rgb.truncate(frame.buffer_size());
            Image {
                width: frame.width,
                height: frame.height,
                rgb,
            }
        }

        fn pixels(&self) -> impl Iterator<Item = (u32, u32, [u8; 3])> + '_ {
            self.rgb.chunks_exact(3).enumerate().map(|(i, px)| {
                let i = i as u32;
                (i % self.width, i / self.width, [px[0], px[1], px[2]])
            })
        }

        /// Bounding box (x_min, x_max, y_min, y_max) of the pixels of exactly `colour`, if any.
        fn extent_of(&self, colour: RGBColor) -> Option<(u32, u32, u32, u32)> {
            let want = [colour.0, colour.1, colour.2];
            self.pixels()
                .filter(|&(_, _, px)| px == want)
                .fold(None, |acc, (x, y, _)| {
                    Some(match acc {
                        None => (x, x, y, y),
                        Some((x0, x1, y0, y1)) => (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
                    })
                })
        }

        /// Positions where two images of the same size differ.
        fn diff(&self, other: &Image) -> Vec<(u32, u32)> {
            assert_eq!((self.width, self.height), (other.width, other.height));
            self.pixels()
                .zip(other.pixels())
                .filter(|(a, b)| a.2 != b.2)
                .map(|(a, _)| (a.0, a.1))
                .collect()
        }
    }

    fn point(train_rows: usize, mean: f64, low: f64, high: f64) -> CurvePoint {
        CurvePoint {
            train_rows,
            mean,
            low,
            high,
        }
    }

    /// Four rising curves over 100…10 000 rows, like a report's low-data figure.
    fn sample() -> Vec<CurveSeries> {
        let labels = [
            "IsoCLR (pre-trained)",
            "random weights",
            "k-mer",
            "supervised from scratch",
        ];
        labels
            .iter()
            .enumerate()
            .map(|(s, label)| CurveSeries {
                label: (*label).to_string(),
                points: [100, 300, 1_000, 3_000, 10_000]
                    .iter()
                    .enumerate()
                    .map(|(p, &rows)| {
                        let mean = 0.1 + 0.12 * p as f64 + 0.04 * s as f64;
                        point(rows, mean, mean - 0.03, mean + 0.05)
                    })
                    .collect(),
            })
            .collect()
    }

    fn plot(dir: &tempfile::TempDir, name: &str, title: &str, metric: &str, series: &[CurveSeries]) -> Image {
        let path = dir.path().join(name);
        plot_learning_curves(&path, title, metric, series).unwrap();
        Image::read(&path)
    }

    #[test]
    fn draws_every_series_as_a_line_across_the_plot() {
        let dir = tempfile::tempdir().unwrap();
        let image = plot(&dir, "curves.png", "Half-life", "Pearson r", &sample());
        assert_eq!((image.width, image.height), (WIDTH, HEIGHT));

        let distinct: std::collections::HashSet<[u8; 3]> = image.pixels().map(|(_, _, px)| px).collect();
        assert!(distinct.len() > 10, "only {} distinct colours", distinct.len());
        for index in 0..4 {
            let colour = series_colour(index);
            let (x0, x1, _, _) = image
                .extent_of(colour)
                .unwrap_or_else(|| panic!("series {index} not drawn"));
            // The legend swatch is 20 px wide; only the line spans most of the plot.
            assert!(x1 - x0 > WIDTH / 2, "series {index} spans x {x0}..{x1}");
        }
        // Series colours are distinct, so every series can be told apart.
        let colours: std::collections::HashSet<_> = (0..20).map(|i| series_colour(i).rgb()).collect();
        assert_eq!(colours.len(), 20);
    }

    #[test]
    fn spread_bars_reach_low_and_high() {
        let dir = tempfile::tempdir().unwrap();
        let curve = |spread: f64| {
            // An unlabelled series stays out of the legend, so its colour is only the curve; a second flat series
            // fixes the y range so both plots share one scale.
            vec![
                CurveSeries {
                    label: String::new(),
                    points: vec![point(100, 0.5, 0.5 - spread, 0.5 + spread), point(1_000, 0.5, 0.5, 0.5)],
                },
                CurveSeries {
                    label: String::new(),
                    points: vec![point(100, 0.0, 0.0, 0.0), point(1_000, 1.0, 1.0, 1.0)],
                },
            ]
        };
        let colour = series_colour(0);
        let (_, _, y0, y1) = plot(&dir, "wide.png", "", "AUROC", &curve(0.4))
            .extent_of(colour)
            .unwrap();
        let wide = y1 - y0;
        let (_, _, y0, y1) = plot(&dir, "none.png", "", "AUROC", &curve(0.0))
            .extent_of(colour)
            .unwrap();
        let none = y1 - y0;
        // 0.8 of a y range of 1.1 on a plot area of about 450 px is about 330 px; without spread only the marker.
        assert!(wide > 250, "bar spans {wide} px");
        assert!(none < 20, "marker spans {none} px");
    }

    #[test]
    fn title_and_metric_text_are_rendered_where_expected() {
        let dir = tempfile::tempdir().unwrap();
        let series = sample();
        let full = plot(&dir, "full.png", "Low-data curves", "Pearson r", &series);
        let no_title = plot(&dir, "no_title.png", "", "Pearson r", &series);
        let no_metric = plot(&dir, "no_metric.png", "Low-data curves", "", &series);

        // With the font missing or broken, text would vanish and these diffs would be empty.
        let title = full.diff(&no_title);
        assert!(title.len() > 100, "title changed {} pixels", title.len());
        assert!(title.iter().all(|&(_, y)| y < 60), "title drawn outside the top band");
        let metric = full.diff(&no_metric);
        assert!(metric.len() > 50, "y description changed {} pixels", metric.len());
        assert!(
            metric.iter().all(|&(x, _)| x < 45),
            "y description drawn outside the left band"
        );

        // Tick labels and "training rows" below the plot: dark anti-aliased glyph pixels.
        let dark_below = full
            .pixels()
            .filter(|&(_, y, px)| y > HEIGHT - 70 && px.iter().all(|&c| c < 100))
            .count();
        assert!(dark_below > 100, "{dark_below} dark pixels under the plot");
    }

    #[test]
    fn degenerate_ranges_are_padded() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            vec![point(1, 0.7, 0.7, 0.7)],
            vec![point(500, 0.0, 0.0, 0.0), point(500, 0.0, 0.0, 0.0)],
            vec![point(usize::MAX, 1e300, 1e300, 1e300)],
            vec![point(10, 1e-310, 1e-310, 1e-310), point(20, -1e-310, -1e-310, 1e-310)],
            // Unsorted, and a mean outside its spread (possible for a percentile bootstrap).
            vec![point(1_000, 0.9, 0.7, 0.8), point(10, 0.2, 0.1, 0.3)],
        ];
        for (i, points) in cases.into_iter().enumerate() {
            let series = [CurveSeries {
                label: format!("case {i}"),
                points,
            }];
            let image = plot(&dir, &format!("case{i}.png"), "degenerate", "r", &series);
            assert!(image.extent_of(series_colour(0)).is_some(), "case {i} drew nothing");
        }
    }

    #[test]
    fn many_series_get_palette_colours() {
        let dir = tempfile::tempdir().unwrap();
        let series: Vec<CurveSeries> = (0..10)
            .map(|s| CurveSeries {
                label: format!("method {s}"),
                points: vec![
                    point(10, s as f64, s as f64, s as f64),
                    point(100, s as f64 + 1.0, s as f64, s as f64 + 2.0),
                ],
            })
            .collect();
        let image = plot(&dir, "many.png", "many", "score", &series);
        for index in 0..10 {
            assert!(
                image.extent_of(series_colour(index)).is_some(),
                "series {index} not drawn"
            );
        }
    }

    /// Runs a plot expected to fail and checks that nothing was written.
    fn fails(series: &[CurveSeries]) -> PlotError {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        let err = plot_learning_curves(&path, "t", "m", series).unwrap_err();
        assert!(!path.exists(), "{err} left a file behind");
        err
    }

    fn one(label: &str, points: Vec<CurvePoint>) -> Vec<CurveSeries> {
        let ok = CurveSeries {
            label: "fine".into(),
            points: vec![point(10, 0.5, 0.4, 0.6)],
        };
        vec![
            ok,
            CurveSeries {
                label: label.into(),
                points,
            },
        ]
    }

    #[test]
    fn rejects_no_series() {
        assert!(matches!(fails(&[]), PlotError::NoSeries));
    }

    #[test]
    fn rejects_a_series_without_points() {
        let err = fails(&one("k-mer", vec![]));
        assert!(
            matches!(&err, PlotError::EmptySeries { series: 1, label } if label == "k-mer"),
            "{err:?}"
        );
        assert!(err.to_string().contains("k-mer"), "{err}");
    }

    #[test]
    fn rejects_zero_training_rows() {
        let err = fails(&one("k-mer", vec![point(10, 0.5, 0.4, 0.6), point(0, 0.5, 0.4, 0.6)]));
        assert!(
            matches!(
                &err,
                PlotError::ZeroRows {
                    series: 1,
                    point: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("point 1"), "{err}");
    }

    #[test]
    fn rejects_non_finite_values() {
        for (field, p) in [
            ("mean", point(10, f64::NAN, 0.4, 0.6)),
            ("low", point(10, 0.5, f64::NEG_INFINITY, 0.6)),
            ("high", point(10, 0.5, 0.4, f64::INFINITY)),
        ] {
            let err = fails(&one("random weights", vec![p]));
            assert!(
                matches!(&err, PlotError::NonFinite { series: 1, point: 0, field: f, .. } if *f == field),
                "{err:?}"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn rejects_an_inverted_spread() {
        let err = fails(&one("k-mer", vec![point(10, 0.5, 0.6, 0.4)]));
        assert!(
            matches!(
                &err,
                PlotError::InvertedSpread {
                    series: 1,
                    point: 0,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_a_y_range_too_wide_for_f64() {
        let err = fails(&one("k-mer", vec![point(10, 0.0, -1e308, 1e308)]));
        assert!(matches!(err, PlotError::YRange { .. }), "{err:?}");
    }

    #[test]
    fn reports_the_path_it_could_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("curves.png");
        let err = plot_learning_curves(&path, "t", "m", &sample()).unwrap_err();
        assert!(matches!(&err, PlotError::Io { path: p, .. } if *p == path), "{err:?}");
        assert!(err.to_string().contains("curves.png"), "{err}");
    }
}
