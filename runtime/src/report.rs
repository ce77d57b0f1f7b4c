//! Results people would rather look at than read: small SVG line charts, no dependencies.

use std::fmt::Write;

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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart with the y axis from `y_range.0` to `y_range.1` and integer x ticks.
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
            r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{:.2}</text>"##,
            w - right,
            py(y),
            py(y),
            left - 6.0,
            py(y) + 4.0,
            y
        );
    }
    let mut x = x0.ceil();
    while x <= x1 {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            px(x),
            h - bottom + 18.0,
            x
        );
        x += 1.0;
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
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
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
        let _ = writeln!(
            s,
            r#"<rect x="{}" y="{:.1}" width="12" height="3" fill="{c}"/><text x="{}" y="{:.1}">{}</text>"#,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        // x from 1 to 3 spans the plot area (70..620); y 0 -> 340, y 1 -> 40.
        assert!(
            svg.contains(r#"points="70.0,340.0 345.0,190.0 620.0,40.0""#),
            "{svg}"
        );
    }
}
