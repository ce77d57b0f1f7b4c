//! Results people would rather look at than read: small SVG line charts, no dependencies, and
//! (feature `png`) a PNG copy of each, rendered in pure Rust with a font embedded in the binary
//! so that the text shows on machines without fonts; and [`progress`], progress as plain lines
//! for logs, where no progress bar shows.

pub mod progress;

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Format version written into every chart (as an XML comment).
pub const FORMAT_VERSION: u32 = 1;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend label.
    pub label: String,
    /// (x, y) points, in order.
    pub points: Vec<(f64, f64)>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// Text for SVG: XML's special characters escaped, and control characters (which XML 1.0
/// forbids, so a name holding one made the whole chart invalid) shown as `\u{..}`.
fn esc(s: &str) -> String {
    retroformer_core::text::printable(s, false)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The x ticks' step: 1 for up to 10 units, else 1, 2 or 5 times a power of ten, so that
/// at most about 10 labels share the axis.
fn x_step(span: f64) -> f64 {
    if span.is_nan() || span <= 10.0 {
        return 1.0;
    }
    let raw = span / 10.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// A y tick's label: two decimals on small scales, whole numbers on large ones.
fn y_tick(y: f64, span: f64) -> String {
    if span >= 100.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.2}")
    }
}

/// A line chart with the y axis from `y_range.0` to `y_range.1` and integer x ticks.
// long: one SVG document written top to bottom (frame, axes, ticks, series, legend); its parts share the plot's coordinates.
pub fn line_chart_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    y_range: (f64, f64),
    series: &[Series],
) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 20.0, 40.0, 60.0);
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0, x1)
    } else {
        (0.0, 1.0)
    };
    let (y0, y1) = y_range;
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, "<!-- retroformer chart, format {FORMAT_VERSION} -->");
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    for i in 0..=5 {
        let y = y0 + (y1 - y0) * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - right,
            py(y),
            py(y),
            left - 6.0,
            py(y) + 4.0,
            y_tick(y, y1 - y0)
        );
    }
    let step = x_step(x1 - x0);
    let mut x = (x0 / step).ceil() * step;
    while x <= x1 {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            h - bottom + 18.0,
            x
        );
        x += step;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="#333"/><line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="#333"/>"##,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (left + w - right) / 2.0,
        h - 16.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        esc(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        // A line needs two points (a one-point polyline is invalid SVG); a single point is
        // drawn by its marker alone.
        if pts.len() >= 2 {
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
                pts.join(" ")
            );
        }
        for &(x, y) in &ser.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"><title>{}: {x}, {y:.3}</title></circle>"#,
                px(x),
                py(y),
                esc(&ser.label)
            );
        }
        let ly = top + 14.0 + 16.0 * i as f64;
        // A label wider than the plot (about 6.7 px a character at 12 px) is squeezed to fit.
        let room = w - right - (left + 30.0) - 4.0;
        let fit = if ser.label.chars().count() as f64 * 6.7 > room {
            format!(r#" textLength="{room:.0}" lengthAdjust="spacingAndGlyphs""#)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{:.1}" width="12" height="3" fill="{c}"/><text x="{}" y="{:.1}"{fit}>{}</text>"#,
            left + 12.0,
            ly - 4.0,
            left + 30.0,
            ly,
            esc(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Why a chart could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The SVG did not parse (a bug in the chart writer, or a hand-edited file).
    #[error("chart {path}: not a valid SVG: {reason}")]
    Svg {
        /// The chart's path.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The chart has no area or is too large to rasterise.
    #[error("chart {path}: cannot rasterise a {width}x{height} image")]
    Size {
        /// The chart's path.
        path: PathBuf,
        /// Width in pixels.
        width: f32,
        /// Height in pixels.
        height: f32,
    },
    /// Writing a file failed.
    #[error("chart {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// DejaVu Sans (Bitstream Vera licence, see `runtime/assets/DejaVuSans.LICENSE`): the charts'
/// `sans-serif`, so that a PNG has the same text on every machine.
#[cfg(feature = "png")]
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The PNG pixels per SVG unit: 2 gives a sharp 1280x800 image for the 640x400 charts.
pub const PNG_SCALE: f32 = 2.0;

/// Render an SVG chart to PNG bytes, at [`PNG_SCALE`], with the embedded font. `path` only
/// names the chart in errors. The PNG carries the chart format version in a `tEXt` chunk.
#[cfg(feature = "png")]
pub fn svg_to_png(svg: &str, path: &Path) -> Result<Vec<u8>, ReportError> {
    use resvg::{tiny_skia, usvg};
    let mut fonts = usvg::fontdb::Database::new();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    let options = usvg::Options {
        fontdb: std::sync::Arc::new(fonts),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| ReportError::Svg {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let (width, height) = (
        tree.size().width() * PNG_SCALE,
        tree.size().height() * PNG_SCALE,
    );
    let too_big = || ReportError::Size {
        path: path.to_path_buf(),
        width,
        height,
    };
    if !(1.0..=8192.0).contains(&width) || !(1.0..=8192.0).contains(&height) {
        return Err(too_big());
    }
    let mut pixmap =
        tiny_skia::Pixmap::new(width.ceil() as u32, height.ceil() as u32).ok_or_else(too_big)?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(PNG_SCALE, PNG_SCALE),
        &mut pixmap.as_mut(),
    );
    let png = pixmap.encode_png().map_err(|e| ReportError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(with_text_chunk(
        &png,
        "Software",
        &format!("retroformer chart, format {FORMAT_VERSION}"),
    ))
}

/// Insert a `tEXt` chunk right after the IHDR chunk of a PNG (8-byte signature, then IHDR of
/// 13 data bytes: 8 + 4 + 4 + 13 + 4 = 33 bytes).
#[cfg(feature = "png")]
fn with_text_chunk(png: &[u8], keyword: &str, text: &str) -> Vec<u8> {
    const AFTER_IHDR: usize = 33;
    let mut data = Vec::with_capacity(keyword.len() + 1 + text.len());
    data.extend_from_slice(keyword.as_bytes());
    data.push(0);
    data.extend_from_slice(text.as_bytes());
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend_from_slice(&(data.len() as u32).to_be_bytes());
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(&data);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    let mut out = Vec::with_capacity(png.len() + chunk.len());
    out.extend_from_slice(&png[..AFTER_IHDR]);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&png[AFTER_IHDR..]);
    out
}

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit: charts are written a few times per run.
#[cfg(feature = "png")]
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Write a chart as `STEM.svg` and (feature `png`) `STEM.png`, each atomically. Returns the
/// paths written. The suffixes are appended (`run.loss` gives `run.loss.svg`), except that a
/// stem already ending in `.svg` or `.png` has that ending replaced.
pub fn write_chart(stem: &Path, svg: &str) -> Result<Vec<PathBuf>, ReportError> {
    let stem = match stem.extension().and_then(|e| e.to_str()) {
        Some("svg" | "png") => stem.with_extension(""),
        _ => stem.to_path_buf(),
    };
    let with = |ext: &str| {
        let mut s = stem.clone().into_os_string();
        s.push(".");
        s.push(ext);
        PathBuf::from(s)
    };
    let svg_path = with("svg");
    retroformer_core::fsutil::write_atomic(&svg_path, svg.as_bytes()).map_err(|source| {
        ReportError::Io {
            path: svg_path.clone(),
            source,
        }
    })?;
    #[allow(unused_mut)]
    let mut written = vec![svg_path];
    #[cfg(feature = "png")]
    {
        let png_path = with("png");
        let png = svg_to_png(svg, &png_path)?;
        retroformer_core::fsutil::write_atomic(&png_path, &png).map_err(|source| {
            ReportError::Io {
                path: png_path.clone(),
                source,
            }
        })?;
        written.push(png_path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_ticks_stay_readable_on_a_wide_axis_and_y_labels_on_a_tall_one() {
        assert_eq!(x_step(4.0), 1.0);
        assert_eq!(x_step(10.0), 1.0);
        assert_eq!(x_step(90.0), 10.0);
        assert_eq!(x_step(30.0), 5.0);
        assert_eq!(x_step(1500.0), 200.0);
        assert_eq!(y_tick(0.25, 1.0), "0.25");
        assert_eq!(y_tick(530349.15, 530349.0), "530349");
    }

    #[test]
    fn names_with_control_characters_give_valid_svg() {
        let svg = line_chart_svg(
            "title\x1b[31m",
            "x",
            "y",
            (0.0, 1.0),
            &[Series {
                label: "a\x00b\x07".into(),
                points: vec![(1.0, 0.5)],
            }],
        );
        assert!(!svg.chars().any(|c| c.is_control() && c != '\n'), "{svg}");
        assert!(svg.contains("a\\u{0}b\\u{7}"), "{svg}");
        #[cfg(feature = "png")]
        assert!(resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default()).is_ok());
    }

    #[cfg(feature = "png")]
    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[cfg(feature = "png")]
    #[test]
    fn a_chart_renders_to_a_png_with_its_text_drawn_and_its_format_version() {
        let svg = line_chart_svg(
            "Success by trial",
            "trial",
            "success rate",
            (0.0, 1.0),
            &[Series {
                label: "react + reflexion".into(),
                points: vec![(1.0, 0.1), (2.0, 0.3)],
            }],
        );
        let png = svg_to_png(&svg, Path::new("t.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1280);
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 800);
        assert_eq!(&png[37..41], b"tEXt");
        let needle = b"retroformer chart, format 1";
        assert!(png.windows(needle.len()).any(|w| w == needle));
        // The same chart without its text must rasterise to a different image: the embedded
        // font really drew the labels (without a font, usvg silently drops text).
        let no_text: String = svg
            .lines()
            .filter(|l| !l.contains("<text"))
            .collect::<Vec<_>>()
            .join("\n");
        let bare = svg_to_png(&no_text, Path::new("t.png")).unwrap();
        assert!(
            png.len() > bare.len() + 2000,
            "{} vs {}",
            png.len(),
            bare.len()
        );
    }

    #[test]
    fn write_chart_writes_the_svg_and_the_png_next_to_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let svg = line_chart_svg("t", "x", "y", (0.0, 1.0), &[]);
        let written = write_chart(&dir.path().join("success"), &svg).unwrap();
        assert_eq!(written[0], dir.path().join("success.svg"));
        assert_eq!(std::fs::read_to_string(&written[0]).unwrap(), svg);
        #[cfg(feature = "png")]
        assert_eq!(written[1], dir.path().join("success.png"));
    }

    #[test]
    fn write_chart_appends_the_suffixes_to_a_dotted_stem_and_replaces_an_svg_ending() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_chart(&dir.path().join("run.loss"), "<svg/>").unwrap();
        assert_eq!(written[0], dir.path().join("run.loss.svg"));
        let written = write_chart(&dir.path().join("cmp.svg"), "<svg/>").unwrap();
        assert_eq!(written[0], dir.path().join("cmp.svg"));
    }

    #[test]
    fn write_chart_names_the_file_it_could_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let stem = dir.path().join("missing-dir").join("success");
        let err = write_chart(&stem, "<svg/>").unwrap_err().to_string();
        assert!(err.contains("missing-dir"), "{err}");
    }

    #[test]
    fn a_chart_places_each_point_and_escapes_labels() {
        let svg = line_chart_svg(
            "Success <by> trial",
            "trial",
            "success rate",
            (0.0, 1.0),
            &[Series {
                label: "react & reflexion".into(),
                points: vec![(1.0, 0.0), (2.0, 0.5), (3.0, 1.0)],
            }],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("Success &lt;by&gt; trial") && svg.contains("react &amp; reflexion"));
        assert_eq!(svg.matches("<circle").count(), 3);
        // A one-point series is its marker only: a polyline needs two points.
        let one = line_chart_svg(
            "one trial",
            "trial",
            "success rate",
            (0.0, 1.0),
            &[Series {
                label: "none".into(),
                points: vec![(1.0, 0.25)],
            }],
        );
        assert_eq!(one.matches("<circle").count(), 1);
        assert!(!one.contains("<polyline"), "{one}");
        // x from 1 to 3 spans the plot area (70..620); y 0 -> 340, y 1 -> 40.
        assert!(
            svg.contains(r#"points="70.0,340.0 345.0,190.0 620.0,40.0""#),
            "{svg}"
        ); // A short label keeps its natural width; one wider than the plot is squeezed into it.
        assert!(!svg.contains("textLength"), "{svg}");
        let long = line_chart_svg(
            "t",
            "trial",
            "success rate",
            (0.0, 1.0),
            &[Series {
                label: "react + reflexion (qwen; reflector SmolLM2-135M-Instruct.Q4_1.gguf + adapter 50abf14192561941)".into(),
                points: vec![(1.0, 0.25), (2.0, 0.5)],
            }],
        );
        assert!(
            long.contains(r#"textLength="516" lengthAdjust="spacingAndGlyphs""#),
            "{long}"
        );
    }
}
