//! The status page: one self-contained HTML document (inline CSS, an inline SVG plot, no
//! script, no outside asset) that refreshes itself. Every piece of text in it is
//! HTML-escaped here; guest text arrives already bounded in the [`Status`].

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::Status;

/// Seconds between two refreshes of the page.
pub(crate) const REFRESH_SECONDS: u32 = 2;

/// The page for `status`.
pub(crate) fn render(status: &Status) -> String {
    let mut html = String::with_capacity(16 << 10);
    let title = escape(&status.title);
    let health = if status.healthy {
        ("ok", "healthy")
    } else if status.draining {
        ("warn", "draining")
    } else {
        ("bad", "broker lost")
    };
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{title} · osiiso-host</title>
<style>{STYLE}</style></head>
<body><header><h1>{title}</h1><span class="badge {}">{}</span>
<span class="muted">up {} · {:.1} {}/s over the last minute</span></header>
"#,
        health.0,
        health.1,
        short_duration(status.uptime),
        status.rate,
        unit(status),
    );
    counts(&mut html, status);
    plot(&mut html, status);
    running(&mut html, status);
    failures(&mut html, status);
    html.push_str("</body></html>\n");
    html
}

fn counts(html: &mut String, status: &Status) {
    let c = &status.counts;
    html.push_str(r#"<section class="counts">"#);
    let mut cell = |label: &str, value: String, class: &str| {
        let _ = write!(
            html,
            r#"<div class="count {class}"><b>{}</b><span>{label}</span></div>"#,
            escape(&value)
        );
    };
    if !status.per_attempt {
        cell("submitted", c.submitted.to_string(), "");
        cell("queued", c.queued.to_string(), "");
    }
    cell("running", c.running.to_string(), "");
    cell("succeeded", c.succeeded.to_string(), "ok");
    cell(
        "failed",
        c.failed.to_string(),
        if c.failed > 0 { "bad" } else { "" },
    );
    cell("cancelled", c.cancelled.to_string(), "");
    if status.per_attempt {
        cell("slots", c.slots.to_string(), "");
    } else {
        cell("retries", c.retries.to_string(), "");
        cell("workers", c.slots.to_string(), "");
    }
    if let Some((used, total)) = status.memory {
        cell(
            "memory in use",
            format!("{} / {}", megabytes(used), megabytes(total)),
            "wide",
        );
    }
    html.push_str("</section>\n");
}

/// What the counts and the throughput count: tasks, or a node's attempts.
fn unit(status: &Status) -> &'static str {
    if status.per_attempt {
        "attempts"
    } else {
        "tasks"
    }
}

/// The throughput of the last minutes as an SVG area plot.
fn plot(html: &mut String, status: &Status) {
    const W: f64 = 600.0;
    const H: f64 = 140.0;
    let series = &status.throughput;
    let peak = series.iter().copied().fold(0.0, f64::max);
    let top = nice_ceiling(peak);
    let n = series.len().max(2);
    let step = W / (n - 1) as f64;
    let mut points = String::with_capacity(series.len() * 16);
    let _ = write!(points, "0,{H}");
    for (i, value) in series.iter().enumerate() {
        let y = H - (value / top * (H - 4.0));
        let _ = write!(points, " {:.1},{:.1}", i as f64 * step, y);
    }
    let _ = write!(
        points,
        " {:.1},{H}",
        (series.len().max(1) - 1) as f64 * step
    );
    let minutes = status.throughput_window.as_secs() / 60;
    let _ = write!(
        html,
        r#"<section><h2>Throughput</h2>
<svg class="plot" viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img" aria-label="{unit} finished per second over the last {minutes} minutes">
<line x1="0" y1="{half}" x2="{W}" y2="{half}" class="grid"/>
<polygon points="{points}" class="area"/></svg>
<div class="axis"><span>{minutes} min ago</span><span>peak {peak:.1}/s · scale {top}/s</span><span>now</span></div>
</section>
"#,
        half = H / 2.0,
        unit = unit(status),
    );
}

fn running(html: &mut String, status: &Status) {
    let _ = write!(
        html,
        "<section><h2>Running ({})</h2>",
        status.counts.running
    );
    if status.running.is_empty() {
        html.push_str(r#"<p class="muted">Nothing is running.</p></section>"#);
        return;
    }
    html.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>task</th><th>plugin/task</th><th>attempt</th><th>elapsed</th>\
         <th>progress</th></tr></thead><tbody>",
    );
    for attempt in &status.running {
        let progress = match attempt.progress {
            Some(progress) => match progress.fraction() {
                Some(fraction) => format!(
                    r#"<meter min="0" max="1" value="{fraction:.3}"></meter> {}"#,
                    escape(&progress.to_string())
                ),
                None => escape(&progress.to_string()),
            },
            None => String::from(r#"<span class="muted">–</span>"#),
        };
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{progress}</td></tr>",
            escape(&attempt.name),
            escape(&attempt.task),
            attempt.attempt,
            short_duration(attempt.elapsed),
        );
    }
    html.push_str("</tbody></table></div></section>\n");
}

fn failures(html: &mut String, status: &Status) {
    html.push_str("<section><h2>Last failures</h2>");
    if status.failures.is_empty() {
        html.push_str(r#"<p class="muted">No failures.</p></section>"#);
        return;
    }
    html.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>when</th><th>task</th><th>kind</th><th>message</th></tr></thead>\
         <tbody>",
    );
    let now = SystemTime::now();
    for failure in &status.failures {
        let ago = now.duration_since(failure.at).unwrap_or_default();
        let _ = write!(
            html,
            r#"<tr><td>{} ago</td><td>{}<br><span class="muted">{}</span></td><td><code>{}</code></td><td class="message">{}</td></tr>"#,
            short_duration(ago),
            escape(&failure.name),
            escape(&failure.task),
            failure.kind.as_str(),
            escape(&failure.message),
        );
    }
    html.push_str("</tbody></table></div></section>\n");
}

/// HTML-escapes text for an element or a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `3.2s`, `4m05s`, `2h03m`.
fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs < 60 {
        format!("{:.1}s", duration.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// `12 MiB`, `11.8 GiB`.
fn megabytes(bytes: usize) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib < 1024.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{:.1} GiB", mib / 1024.0)
    }
}

/// The plot's scale: 1, 2 or 5 times a power of ten, at least `peak` (and at least 1).
fn nice_ceiling(peak: f64) -> f64 {
    if peak.is_nan() || peak <= 1.0 {
        return 1.0;
    }
    let power = 10f64.powf(peak.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|v| *v >= peak)
        .unwrap_or(10.0 * power)
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;padding:12px;max-width:1100px;color:#1d2230;background:#f6f7f9}\
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:8px 12px}\
h1{font-size:1.3em;margin:0}h2{font-size:1.05em;margin:18px 0 6px}\
.muted{color:#6b7180}\
.badge{padding:1px 8px;border-radius:10px;font-weight:600;font-size:.85em}\
.badge.ok{background:#d8f3dc;color:#1b5e20}.badge.warn{background:#fff3c4;color:#7a5b00}.badge.bad{background:#fde0e0;color:#9b1c1c}\
.counts{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:8px;margin-top:12px}\
.count{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:8px}\
.count b{display:block;font-size:1.35em;font-variant-numeric:tabular-nums;white-space:nowrap}\
.count span{color:#6b7180;font-size:.85em}\
.count.wide{grid-column:span 2}.count.ok b{color:#1b5e20}.count.bad b{color:#9b1c1c}\
.plot{width:100%;height:140px;background:#fff;border:1px solid #e1e4ea;border-radius:8px;display:block}\
.plot .area{fill:#9ec5fe;stroke:#1f6feb;stroke-width:1.5;vector-effect:non-scaling-stroke}\
.plot .grid{stroke:#e1e4ea;stroke-dasharray:4 4;vector-effect:non-scaling-stroke}\
.axis{display:flex;justify-content:space-between;color:#6b7180;font-size:.8em}\
.scroll{overflow-x:auto;background:#fff;border:1px solid #e1e4ea;border-radius:8px}\
table{width:100%;border-collapse:collapse}\
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}\
th{font-size:.8em;color:#6b7180;font-weight:600}\
td.message{word-break:break-word;white-space:pre-wrap;max-width:60ch}\
meter{width:90px;vertical-align:middle}\
@media (max-width:600px){body{font-size:14px;padding:8px}th,td{padding:4px 5px}meter{width:60px}}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::metrics::{Metrics, RecentFailure};

    #[test]
    fn guest_text_is_escaped_and_the_page_is_self_contained() {
        let metrics = Metrics::new();
        metrics.failed(RecentFailure::new(
            "<img src=x onerror=alert(1)>",
            "p/t",
            FailureKind::Failed,
            "</td><script>alert(\"x\")</script>",
        ));
        let html = render(&metrics.status(10));
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;/td&gt;&lt;script&gt;"));
        assert!(html.contains("<svg"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn the_scale_is_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(160_000.0), 200_000.0);
    }
}
