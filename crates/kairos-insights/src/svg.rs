//! Small inline-SVG charts for the reports: line charts and grouped bar
//! charts with axes, ticks and a legend. No scripts and no external
//! resources, so a report opens anywhere, offline, years later.

use std::fmt::Write;

use crate::metrics::Point;

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;

/// One line on a chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: Vec<Point>,
    pub dashed: bool,
}

/// Axis ranges and labels shared by both chart kinds.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
}

impl Axes<'_> {
    fn x(&self, value: f64) -> f64 {
        LEFT + (value - self.x_range.0) / (self.x_range.1 - self.x_range.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        HEIGHT
            - BOTTOM
            - (value - self.y_range.0) / (self.y_range.1 - self.y_range.0) * (HEIGHT - TOP - BOTTOM)
    }
}

/// A line chart; at most 400 points per series are drawn (evenly thinned).
pub fn line_chart(axes: &Axes, series: &[Series]) -> String {
    let mut svg = open(axes);
    grid(&mut svg, axes, true);
    for line in series {
        let step = (line.points.len() / 400).max(1);
        let path: Vec<String> = line
            .points
            .iter()
            .enumerate()
            .filter(|(index, _)| index % step == 0 || *index == line.points.len() - 1)
            .map(|(_, p)| format!("{:.1},{:.1}", axes.x(p.x), axes.y(p.y)))
            .collect();
        let dash = if line.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="2.2"{dash} points="{}"/>"#,
            line.color,
            path.join(" ")
        );
        if line.points.len() <= 12 {
            for p in &line.points {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
                    axes.x(p.x),
                    axes.y(p.y),
                    line.color
                );
            }
        }
    }
    let entries: Vec<(&str, &str)> = series.iter().map(|line| (line.name, line.color)).collect();
    legend(&mut svg, &entries);
    svg.push_str("</svg>");
    svg
}

/// Grouped bars: one group per category, one bar per series in each group.
pub fn bar_chart(axes: &Axes, categories: &[String], series: &[(&str, &str, Vec<f64>)]) -> String {
    let mut svg = open(axes);
    grid(&mut svg, axes, false);
    let group_width = (WIDTH - LEFT - RIGHT) / categories.len().max(1) as f64;
    let bar_width = group_width * 0.8 / series.len().max(1) as f64;
    let zero = axes.y(0.0_f64.clamp(axes.y_range.0, axes.y_range.1));
    for (group, category) in categories.iter().enumerate() {
        let group_left = LEFT + group as f64 * group_width + group_width * 0.1;
        for (position, (name, color, values)) in series.iter().enumerate() {
            let value = values[group];
            let top = axes.y(value.clamp(axes.y_range.0, axes.y_range.1));
            let (y, height) = if top < zero {
                (top, zero - top)
            } else {
                (zero, top - zero)
            };
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{height:.1}" fill="{color}" rx="2"><title>{name} — {category}: {}</title></rect>"#,
                group_left + position as f64 * bar_width,
                bar_width - 1.0,
                format_tick(value)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"#,
            group_left + group_width * 0.4,
            HEIGHT - BOTTOM + 16.0,
            escape(category)
        );
    }
    let entries: Vec<(&str, &str)> = series
        .iter()
        .map(|(name, color, _)| (*name, *color))
        .collect();
    legend(&mut svg, &entries);
    svg.push_str("</svg>");
    svg
}

fn open(axes: &Axes) -> String {
    let mut svg = format!(
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        escape(axes.title)
    );
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="22" class="chart-title">{}</text>"#,
        escape(axes.title)
    );
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis-label">{}</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 12.0,
        escape(axes.x_label)
    );
    let _ = write!(
        svg,
        r#"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" class="axis-label">{}</text>"#,
        (TOP + HEIGHT - BOTTOM) / 2.0,
        escape(axes.y_label)
    );
    svg
}

fn grid(svg: &mut String, axes: &Axes, x_ticks: bool) {
    for tick in ticks(axes.y_range) {
        let y = axes.y(tick);
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="grid"/>"#,
            WIDTH - RIGHT
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            format_tick(tick)
        );
    }
    if x_ticks {
        for tick in ticks(axes.x_range) {
            let x = axes.x(tick);
            let _ = write!(
                svg,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" class="grid"/>"#,
                HEIGHT - BOTTOM
            );
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"#,
                HEIGHT - BOTTOM + 16.0,
                format_tick(tick)
            );
        }
    }
    let _ = write!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{:.1}" class="frame"/>"#,
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM
    );
}

fn legend(svg: &mut String, entries: &[(&str, &str)]) {
    let mut x = LEFT + 10.0;
    for (name, color) in entries {
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="12" height="12" fill="{color}" rx="2"/>"#,
            TOP + 8.0
        );
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" class="legend">{}</text>"#,
            x + 17.0,
            TOP + 18.0,
            escape(name)
        );
        x += 30.0 + name.chars().count() as f64 * 6.6;
    }
}

/// About five round tick values across `range`.
fn ticks((low, high): (f64, f64)) -> Vec<f64> {
    let span = (high - low).abs().max(1e-12);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(magnitude * 10.0);
    let first = (low / step).ceil() * step;
    (0..=10)
        .map(|i| first + i as f64 * step)
        .take_while(|&t| t <= high + step * 1e-9)
        .collect()
}

fn format_tick(value: f64) -> String {
    if value.abs() >= 1000.0 || value == value.round() {
        format!("{value:.0}")
    } else if value.abs() >= 0.1 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks((0.0, 1.0)),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(ticks((0.0, 20000.0)).len(), 5);
    }

    #[test]
    fn charts_are_self_contained_svg() {
        let axes = Axes {
            title: "A & B",
            x_label: "x",
            y_label: "y",
            x_range: (0.0, 1.0),
            y_range: (0.0, 1.0),
        };
        let chart = line_chart(
            &axes,
            &[Series {
                name: "s",
                color: "#123",
                points: vec![Point { x: 0.0, y: 0.0 }, Point { x: 1.0, y: 1.0 }],
                dashed: false,
            }],
        );
        assert!(chart.starts_with("<svg") && chart.ends_with("</svg>"));
        assert!(chart.contains("A &amp; B") && !chart.contains("http"));
    }
}
