//! The text of `get rollout`: Argo's header (`Step: i/n`, `SetWeight: N`, `ActualWeight: N`, ...)
//! and the tree Rollout → revisions → ReplicaSets → pods, and analysis runs → metrics.

use jiff::Timestamp;

use crate::plugin::info::{
    AnalysisRunInfo, ImageInfo, MetricInfo, ReplicaSetInfo, RevisionInfo, Role, RolloutInfo,
    StrategyInfo,
};
use crate::plugin::style::{Color, Style};
use crate::plugin::table::{self, age_of, align, human_age, short_sha};

const ICON_ROLLOUT: &str = "⟳";
const ICON_REVISION: &str = "#";
const ICON_REPLICA_SET: &str = "⧉";
const ICON_POD: &str = "□";
const ICON_ANALYSIS_RUN: &str = "α";
const ICON_METRIC: &str = "⊡";

/// The whole output of `get rollout`.
pub fn render_rollout(info: &RolloutInfo, now: Timestamp, style: Style) -> String {
    let mut out = header(info, style);
    out.push('\n');
    for line in align(&tree_rows(info, now, style)) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn field(out: &mut String, label: &str, value: &str) {
    table::field(out, 17, label, value);
}

fn header(info: &RolloutInfo, style: Style) -> String {
    let mut out = String::new();
    field(&mut out, "Name:", &info.name);
    field(&mut out, "Namespace:", &info.namespace);
    field(&mut out, "Status:", &style.status(&info.status));
    if !info.message.is_empty() {
        field(&mut out, "Message:", &info.message);
    }
    match &info.strategy {
        StrategyInfo::Canary {
            step,
            set_weight,
            actual_weight,
        } => {
            field(&mut out, "Strategy:", "Canary");
            field(&mut out, "  Step:", step);
            field(&mut out, "  SetWeight:", &set_weight.to_string());
            field(&mut out, "  ActualWeight:", &actual_weight.to_string());
            if let Some(experiment) = &info.experiment {
                // `kubectl sluice get experiment NAME` shows it in full.
                field(&mut out, "  Experiment:", experiment);
            }
        }
        StrategyInfo::BlueGreen => field(&mut out, "Strategy:", "BlueGreen"),
    }
    for (i, image) in info.images.iter().enumerate() {
        let label = if i == 0 { "Images:" } else { "" };
        field(&mut out, label, &image_line(image, style));
    }
    if let Some(revert) = &info.revert {
        let mut value = format!("{:?} {}", revert.phase, short_sha(&revert.sha));
        if let Some(commit) = &revert.revert_commit {
            value.push_str(&format!(" reverted by {}", short_sha(commit)));
        }
        field(&mut out, "Git revert:", &value);
    }
    out.push_str("Replicas:\n");
    let r = info.replicas;
    field(&mut out, "  Desired:", &r.desired.to_string());
    field(&mut out, "  Current:", &r.current.to_string());
    field(&mut out, "  Updated:", &r.updated.to_string());
    field(&mut out, "  Ready:", &r.ready.to_string());
    field(&mut out, "  Available:", &r.available.to_string());
    out
}

fn image_line(image: &ImageInfo, style: Style) -> String {
    if image.roles.is_empty() {
        return image.image.clone();
    }
    format!("{} ({})", image.image, roles_text(&image.roles, style))
}

fn roles_text(roles: &[Role], style: Style) -> String {
    roles
        .iter()
        .map(|r| style.paint(role_color(*r), r.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn role_color(role: Role) -> Color {
    match role {
        Role::Stable | Role::Active => Color::Green,
        Role::Canary | Role::Preview => Color::Yellow,
    }
}

/// Tree prefixes: the branch of this node and the continuation under it.
fn branch(last: bool, indent: &str) -> (String, String) {
    if last {
        (format!("{indent}└──"), format!("{indent}   "))
    } else {
        (format!("{indent}├──"), format!("{indent}│  "))
    }
}

fn row(name: String, kind: &str, status: String, age: String, info: String) -> Vec<String> {
    vec![name, kind.to_string(), status, age, info]
}

fn tree_rows(info: &RolloutInfo, now: Timestamp, style: Style) -> Vec<Vec<String>> {
    let mut rows = vec![
        row(
            "NAME".into(),
            "KIND",
            "STATUS".into(),
            "AGE".into(),
            "INFO".into(),
        ),
        row(
            format!("{ICON_ROLLOUT} {}", info.name),
            "Rollout",
            style.status(&info.status),
            age_of(info.created.as_ref(), now),
            String::new(),
        ),
    ];
    for (i, revision) in info.revisions.iter().enumerate() {
        let (prefix, indent) = branch(i + 1 == info.revisions.len(), "");
        revision_rows(&mut rows, revision, &prefix, &indent, now, style);
    }
    rows
}

fn revision_rows(
    rows: &mut Vec<Vec<String>>,
    revision: &RevisionInfo,
    prefix: &str,
    indent: &str,
    now: Timestamp,
    style: Style,
) {
    rows.push(row(
        format!("{prefix}{ICON_REVISION} revision:{}", revision.revision),
        "",
        String::new(),
        String::new(),
        revision_info(revision, style),
    ));
    let children = revision.replica_sets.len() + revision.analysis_runs.len();
    let mut index = 0;
    for rs in &revision.replica_sets {
        index += 1;
        let (prefix, child_indent) = branch(index == children, indent);
        replica_set_rows(rows, rs, &prefix, &child_indent, now, style);
    }
    for run in &revision.analysis_runs {
        index += 1;
        let (prefix, child_indent) = branch(index == children, indent);
        analysis_run_rows(rows, run, &prefix, &child_indent, now, style);
    }
}

/// Roles, images and the Git commit behind the revision.
fn revision_info(revision: &RevisionInfo, style: Style) -> String {
    let mut parts = Vec::new();
    if !revision.roles.is_empty() {
        parts.push(roles_text(&revision.roles, style));
    }
    parts.extend(revision.images.iter().cloned());
    if let Some(sha) = &revision.git_revision {
        let mut commit = format!("commit {}", short_sha(sha));
        if let Some(app) = &revision.application {
            commit.push_str(&format!(" ({app})"));
        }
        parts.push(commit);
    }
    parts.join("  ")
}

fn replica_set_rows(
    rows: &mut Vec<Vec<String>>,
    rs: &ReplicaSetInfo,
    prefix: &str,
    indent: &str,
    now: Timestamp,
    style: Style,
) {
    let mut info = format!("ready:{}/{}", rs.ready, rs.desired);
    // Argo's `delay:`: how long a ReplicaSet kept for its scale-down delay still runs.
    if let Some(deadline) = rs
        .scale_down_deadline
        .filter(|d| *d > now && rs.desired > 0)
    {
        info.push_str(&format!(",delay:{}", human_age(now, deadline)));
    }
    rows.push(row(
        format!("{prefix}{ICON_REPLICA_SET} {}", rs.name),
        "ReplicaSet",
        style.status(&rs.status),
        age_of(rs.created.as_ref(), now),
        info,
    ));
    for (i, pod) in rs.pods.iter().enumerate() {
        let (prefix, _) = branch(i + 1 == rs.pods.len(), indent);
        let mut info = format!("ready:{}/{}", pod.ready_containers, pod.containers);
        if pod.restarts > 0 {
            info.push_str(&format!(",restarts:{}", pod.restarts));
        }
        rows.push(row(
            format!("{prefix}{ICON_POD} {}", pod.name),
            "Pod",
            style.status(pod.display_status()),
            age_of(pod.created.as_ref(), now),
            info,
        ));
    }
}

fn analysis_run_rows(
    rows: &mut Vec<Vec<String>>,
    run: &AnalysisRunInfo,
    prefix: &str,
    indent: &str,
    now: Timestamp,
    style: Style,
) {
    let counts = [
        ("✔", run.successful),
        ("✖", run.failed),
        ("?", run.inconclusive),
        ("⚠", run.error),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(icon, n)| format!("{icon} {n}"))
    .collect::<Vec<_>>()
    .join(",");
    rows.push(row(
        format!("{prefix}{ICON_ANALYSIS_RUN} {}", run.name),
        "AnalysisRun",
        style.status(run.phase.as_str()),
        age_of(run.created.as_ref(), now),
        counts,
    ));
    for (i, metric) in run.metrics.iter().enumerate() {
        let (prefix, _) = branch(i + 1 == run.metrics.len(), indent);
        rows.push(row(
            format!("{prefix}{ICON_METRIC} {}", metric.name),
            "Metric",
            style.status(metric.phase.as_str()),
            String::new(),
            metric_text(metric),
        ));
    }
}

/// A metric's last values (oldest first), or why it has none.
fn metric_text(metric: &MetricInfo) -> String {
    let mut text = if metric.values.is_empty() {
        metric
            .error
            .as_deref()
            .map(|e| format!("error: {}", truncate(e, 80)))
            .unwrap_or_default()
    } else {
        format!("last: {}", metric.values.join(" "))
    };
    if metric.dry_run {
        text.push_str(if text.is_empty() {
            "dry-run"
        } else {
            " (dry-run)"
        });
    }
    text
}

fn truncate(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
