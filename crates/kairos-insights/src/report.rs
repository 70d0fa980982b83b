//! The HTML report each training run leaves behind: one self-contained
//! `index.html` (inline CSS and SVG, no scripts, no external resources)
//! that a person would rather look at than read `metrics.json`.

use std::fmt::Write;

use crate::metrics::{CalibrationBin, Confusion, Point, UpliftBucket};
use crate::svg::{Axes, Series, bar_chart, escape, line_chart};

const BLUE: &str = "#2563eb";
const ORANGE: &str = "#ea580c";
const GREEN: &str = "#16a34a";
const GREY: &str = "#9ca3af";

/// A metric row: name, our value, the published reference (if any).
pub struct MetricRow {
    pub name: String,
    pub ours: String,
    pub reference: String,
}

pub fn metric_row(name: &str, ours: f64, reference: Option<f64>) -> MetricRow {
    MetricRow {
        name: name.to_string(),
        ours: format!("{ours:.4}"),
        reference: reference.map_or_else(|| "—".to_string(), |value| format!("{value:.4}")),
    }
}

/// The whole page around some sections of HTML.
pub fn page(title: &str, lead: &str, sections: &[String]) -> String {
    let mut html = String::with_capacity(64 * 1024);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head>\
         <body><header><p class=\"brand\">Kairos insights</p><h1>{title}</h1><p class=\"lead\">{lead}</p></header><main>",
        title = escape(title),
    );
    for section in sections {
        html.push_str(section);
    }
    html.push_str("</main></body></html>\n");
    html
}

/// A titled card; `body` is trusted HTML built by this module.
pub fn card(title: &str, explanation: &str, body: &str) -> String {
    format!(
        "<section class=\"card\"><h2>{}</h2><p class=\"explain\">{explanation}</p>{body}</section>",
        escape(title)
    )
}

pub fn metrics_table(rows: &[MetricRow]) -> String {
    let mut html = String::from(
        "<table class=\"metrics\"><tr><th>metric</th><th>Kairos</th><th>reference</th></tr>",
    );
    for row in rows {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"ours\">{}</td><td>{}</td></tr>",
            escape(&row.name),
            row.ours,
            row.reference
        );
    }
    html.push_str("</table>");
    html
}

pub fn confusion_matrix(counts: &Confusion) -> String {
    format!(
        "<table class=\"confusion\"><tr><th></th><th>predicted: buys</th><th>predicted: no</th></tr>\
         <tr><th>actually bought</th><td class=\"good\">{}</td><td class=\"bad\">{}</td></tr>\
         <tr><th>did not buy</th><td class=\"bad\">{}</td><td class=\"good\">{}</td></tr></table>",
        counts.true_positive, counts.false_negative, counts.false_positive, counts.true_negative
    )
}

pub fn roc_chart(points: Vec<Point>, auc: f64) -> String {
    let axes = Axes {
        title: "ROC curve",
        x_label: "false-positive rate",
        y_label: "true-positive rate",
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
    };
    let name = format!("model (AUC {auc:.3})");
    line_chart(
        &axes,
        &[
            Series {
                name: &name,
                color: BLUE,
                points,
                dashed: false,
            },
            Series {
                name: "random",
                color: GREY,
                points: diagonal(),
                dashed: true,
            },
        ],
    )
}

pub fn calibration_chart(bins: &[CalibrationBin]) -> String {
    let axes = Axes {
        title: "Calibration",
        x_label: "predicted probability",
        y_label: "observed purchase rate",
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
    };
    let points = bins
        .iter()
        .map(|bin| Point {
            x: bin.mean_predicted,
            y: bin.observed_rate,
        })
        .collect();
    line_chart(
        &axes,
        &[
            Series {
                name: "model",
                color: ORANGE,
                points,
                dashed: false,
            },
            Series {
                name: "perfectly calibrated",
                color: GREY,
                points: diagonal(),
                dashed: true,
            },
        ],
    )
}

pub fn gain_chart(gain: Vec<Point>) -> String {
    let axes = Axes {
        title: "Cumulative gain",
        x_label: "share of sessions targeted (highest score first)",
        y_label: "share of purchases reached",
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
    };
    line_chart(
        &axes,
        &[
            Series {
                name: "model",
                color: GREEN,
                points: gain,
                dashed: false,
            },
            Series {
                name: "random targeting",
                color: GREY,
                points: diagonal(),
                dashed: true,
            },
        ],
    )
}

pub fn lift_chart(gain: &[Point]) -> String {
    let deciles: Vec<&Point> = gain.iter().filter(|p| p.x > 0.0).collect();
    let categories: Vec<String> = deciles
        .iter()
        .map(|p| format!("{:.0}%", p.x * 100.0))
        .collect();
    let lifts: Vec<f64> = deciles.iter().map(|p| p.y / p.x).collect();
    let top = lifts.iter().copied().fold(1.0, f64::max).ceil();
    let axes = Axes {
        title: "Lift",
        x_label: "top share of sessions targeted",
        y_label: "lift over random",
        x_range: (0.0, 1.0),
        y_range: (0.0, top),
    };
    bar_chart(&axes, &categories, &[("lift", BLUE, lifts)])
}

pub fn qini_chart(model: Vec<Point>, perfect: Vec<Point>, qini: f64) -> String {
    let last = model.last().copied().unwrap_or(Point { x: 1.0, y: 0.0 });
    let y_high = perfect
        .iter()
        .chain(&model)
        .map(|p| p.y)
        .fold(0.0, f64::max)
        * 1.05;
    let y_low = model.iter().map(|p| p.y).fold(0.0, f64::min);
    let axes = Axes {
        title: "Qini curve",
        x_label: "people targeted (highest predicted uplift first)",
        y_label: "extra visits caused",
        x_range: (0.0, last.x),
        y_range: (y_low, y_high.max(1.0)),
    };
    let name = format!("model (Qini {qini:.4})");
    line_chart(
        &axes,
        &[
            Series {
                name: &name,
                color: BLUE,
                points: model,
                dashed: false,
            },
            Series {
                name: "random",
                color: GREY,
                points: vec![Point { x: 0.0, y: 0.0 }, last],
                dashed: true,
            },
            Series {
                name: "perfect",
                color: GREEN,
                points: perfect,
                dashed: true,
            },
        ],
    )
}

pub fn uplift_decile_chart(buckets: &[UpliftBucket]) -> String {
    let categories: Vec<String> = (1..=buckets.len())
        .map(|decile| format!("{decile}"))
        .collect();
    let observed: Vec<f64> = buckets
        .iter()
        .map(|bucket| bucket.observed_uplift * 100.0)
        .collect();
    let predicted: Vec<f64> = buckets
        .iter()
        .map(|bucket| bucket.predicted_uplift * 100.0)
        .collect();
    let high = observed
        .iter()
        .chain(&predicted)
        .copied()
        .fold(0.0, f64::max)
        .ceil()
        + 1.0;
    let low = observed
        .iter()
        .chain(&predicted)
        .copied()
        .fold(0.0, f64::min)
        .floor();
    let axes = Axes {
        title: "Uplift by decile",
        x_label: "decile of predicted uplift (1 = highest)",
        y_label: "uplift, percentage points",
        x_range: (0.0, 1.0),
        y_range: (low, high),
    };
    bar_chart(
        &axes,
        &categories,
        &[
            ("observed (treated − control)", BLUE, observed),
            ("predicted", ORANGE, predicted),
        ],
    )
}

pub fn histogram_chart(
    title: &str,
    x_label: &str,
    categories: Vec<String>,
    counts: Vec<f64>,
) -> String {
    let high = counts.iter().copied().fold(1.0, f64::max) * 1.1;
    let axes = Axes {
        title,
        x_label,
        y_label: "customers",
        x_range: (0.0, 1.0),
        y_range: (0.0, high),
    };
    bar_chart(&axes, &categories, &[("customers", BLUE, counts)])
}

pub fn actual_vs_expected_chart(
    categories: Vec<String>,
    actual: Vec<f64>,
    expected: Vec<f64>,
) -> String {
    let high = actual.iter().chain(&expected).copied().fold(1.0, f64::max) * 1.1;
    let axes = Axes {
        title: "Repeat purchases in calibration: actual vs model",
        x_label: "repeat purchases",
        y_label: "customers",
        x_range: (0.0, 1.0),
        y_range: (0.0, high),
    };
    bar_chart(
        &axes,
        &categories,
        &[
            ("actual", BLUE, actual),
            ("BG/NBD expected", ORANGE, expected),
        ],
    )
}

fn diagonal() -> Vec<Point> {
    vec![Point { x: 0.0, y: 0.0 }, Point { x: 1.0, y: 1.0 }]
}

/// Two charts side by side.
pub fn pair(left: &str, right: &str) -> String {
    format!("<div class=\"pair\"><div>{left}</div><div>{right}</div></div>")
}

const STYLE: &str = "
:root{--ink:#111827;--muted:#6b7280;--line:#e5e7eb;--card:#fff;--bg:#f3f4f6;--accent:#2563eb}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif}
header{background:linear-gradient(120deg,#1e3a8a,#2563eb);color:#fff;padding:28px 40px}
header h1{margin:4px 0 6px;font-size:26px}.brand{margin:0;opacity:.8;letter-spacing:.08em;text-transform:uppercase;font-size:12px}
.lead{margin:0;max-width:900px;opacity:.95}main{max-width:1180px;margin:0 auto;padding:24px}
.card{background:var(--card);border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:20px 24px;margin-bottom:20px}
.card h2{margin:0 0 4px;font-size:18px}.explain{color:var(--muted);margin:0 0 14px;max-width:900px}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:16px}@media(max-width:900px){.pair{grid-template-columns:1fr}}
svg{width:100%;height:auto;font-size:11px}.chart-title{font-size:14px;font-weight:600;fill:var(--ink)}
.axis-label{fill:var(--muted);font-size:12px}.tick{fill:var(--muted)}.legend{fill:var(--ink)}
.grid{stroke:var(--line)}.frame{fill:none;stroke:#d1d5db}
table{border-collapse:collapse;margin:4px 0}th,td{padding:7px 14px;border-bottom:1px solid var(--line);text-align:left}
th{color:var(--muted);font-weight:600}td.ours{font-weight:700;color:var(--accent)}
.confusion td{text-align:center;font-size:18px;font-weight:600;min-width:120px}.confusion td.good{background:#dcfce7}.confusion td.bad{background:#fee2e2}
.segments{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}@media(max-width:900px){.segments{grid-template-columns:1fr 1fr}}
.segment{border:1px solid var(--line);border-radius:10px;padding:12px}.segment b{display:block;font-size:15px}.segment span{color:var(--muted);font-size:13px}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        let html = page(
            "Propensity",
            "lead",
            &[card(
                "ROC",
                "why",
                &roc_chart(
                    vec![Point { x: 0.0, y: 0.0 }, Point { x: 1.0, y: 1.0 }],
                    0.5,
                ),
            )],
        );
        assert!(html.contains("<svg"));
        assert!(!html.contains("http") && !html.contains("<script"));
    }
}
