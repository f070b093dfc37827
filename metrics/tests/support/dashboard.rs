//! The Grafana dashboard as the tests see it: its panel queries, Grafana's variable
//! interpolation and `label_values`, so every test checks the dashboard the same way.
//! Like `prometheus.rs`, written to be included by other crates' tests too
//! (`#[path = "../../metrics/tests/support/dashboard.rs"] mod dashboard;`).
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub(crate) fn dashboard_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../grafana/dashboards/bastion.json")
}

pub(crate) fn load_dashboard() -> Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
pub(crate) fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// `(panel title, refId, expr, legendFormat)` of every panel target.
pub(crate) fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, String, String)> {
    let mut queries = Vec::new();
    for panel in all_panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("<untitled>").to_owned();
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((
                title.clone(),
                target["refId"].as_str().unwrap_or_default().to_owned(),
                target["expr"].as_str().unwrap_or_default().to_owned(),
                target["legendFormat"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    queries
}

/// Grafana's interpolation for the values this test chooses: `$name`, `${name}` and
/// `[[name]]`. Anything still holding a `$` afterwards names a variable the test does not
/// know, which is an error.
pub(crate) fn interpolate(expr: &str, vars: &BTreeMap<&str, &str>) -> Result<String, String> {
    let mut out = expr.to_owned();
    // Longest names first, so a name that prefixes another (`$node`, `$nodes`) cannot eat it.
    let mut names: Vec<_> = vars.keys().copied().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let value = vars[name];
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("[[{name}]]"), value)
            .replace(&format!("${name}"), value);
    }
    if out.contains('$') || out.contains("[[") {
        return Err(format!(
            "{expr:?}: unknown template variable left in {out:?}"
        ));
    }
    Ok(out)
}

/// Label names a legend like `p95 {{node}}` refers to.
pub(crate) fn legend_labels(legend: &str) -> Vec<&str> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}").map(|(name, _)| name.trim()))
        .collect()
}

/// Grafana's `label_values(selector, label)` as the PromQL that returns the same values.
pub(crate) fn label_values_query(query: &str) -> Result<(String, String), String> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("{query:?} is not label_values(selector, label)"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| format!("{query:?} has no label argument"))?;
    let label = label.trim().to_owned();
    Ok((format!("group by ({label}) ({})", selector.trim()), label))
}
