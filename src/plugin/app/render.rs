//! The text of the `app` commands (pure): `list`, `get`, `history` and `diff`, laid out as Argo
//! CD's CLI lays them out.

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::application::{Application, ApplicationStatus, ResourceStatus, SyncStatusCode};
use crate::plugin::style::{Color, Style};
use crate::plugin::table::{self, align, human_age, short_sha};

/// `app list`: one line per Application, sorted by namespace and name.
pub fn render_app_list(apps: &[Application], all_namespaces: bool, style: Style) -> String {
    if apps.is_empty() {
        return "No Applications found.\n".to_string();
    }
    let mut sorted: Vec<&Application> = apps.iter().collect();
    sorted.sort_by_key(|a| (a.namespace(), a.name_any()));
    let mut header: Vec<String> = Vec::new();
    if all_namespaces {
        header.push("NAMESPACE".into());
    }
    header.extend(
        [
            "NAME",
            "SYNC",
            "HEALTH",
            "REVISION",
            "SYNCPOLICY",
            "REPO",
            "PATH",
            "TARGET",
        ]
        .map(String::from),
    );
    let mut rows = vec![header];
    for app in sorted {
        let status = app.status.clone().unwrap_or_default();
        let mut row = Vec::new();
        if all_namespaces {
            row.push(app.namespace().unwrap_or_default());
        }
        row.extend([
            app.name_any(),
            style.status(status.sync_status().as_str()),
            style.status(status.health_status().as_str()),
            synced_revision(&status).map_or_else(|| "-".to_string(), |r| short_sha(r).to_string()),
            sync_policy(app),
            app.spec.source.repo_url.clone(),
            app.spec.source.path().to_string(),
            app.spec.source.target_revision().to_string(),
        ]);
        rows.push(row);
    }
    align(&rows).into_iter().map(|l| l + "\n").collect()
}

fn synced_revision(status: &ApplicationStatus) -> Option<&str> {
    status
        .sync
        .as_ref()
        .and_then(|s| s.revision.as_deref())
        .filter(|r| !r.is_empty())
}

/// `Automated (Prune, SelfHeal)`, or `Manual`.
fn sync_policy(app: &Application) -> String {
    let Some(automated) = app.spec.automated() else {
        return "Manual".to_string();
    };
    let flags: Vec<&str> = [
        (automated.prune(), "Prune"),
        (automated.self_heal(), "SelfHeal"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if flags.is_empty() {
        "Automated".to_string()
    } else {
        format!("Automated ({})", flags.join(", "))
    }
}

/// The width of the labels of `app get`, as Argo CD's CLI (`proj get` uses it too).
pub(crate) const LABEL_WIDTH: usize = 20;

fn field(out: &mut String, label: &str, value: &str) {
    table::field(out, LABEL_WIDTH, label, value);
}

/// `app get`: the Application's source, sync, health, operation and conditions, then its objects.
pub fn render_app(app: &Application, style: Style) -> String {
    let status = app.status.clone().unwrap_or_default();
    let source = &app.spec.source;
    let mut out = String::new();
    field(
        &mut out,
        "Name:",
        &format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any()),
    );
    field(&mut out, "Project:", app.spec.project());
    field(
        &mut out,
        "Destination:",
        &format!(
            "{} ({})",
            app.spec.destination.server(),
            app.spec.destination.namespace.as_deref().unwrap_or("-")
        ),
    );
    field(&mut out, "Repo:", &source.repo_url);
    field(&mut out, "Target:", source.target_revision());
    field(&mut out, "Path:", source.path());
    field(&mut out, "SyncPolicy:", &sync_policy(app));
    // `spec.info`, Argo CD's free-form notes, one per line.
    for (i, info) in app.spec.info.iter().enumerate() {
        let label = if i == 0 { "Info:" } else { "" };
        field(&mut out, label, &format!("{}: {}", info.name, info.value));
    }
    let mut sync = style.status(status.sync_status().as_str());
    sync.push_str(&format!(" to {}", source.target_revision()));
    if let Some(revision) = synced_revision(&status) {
        sync.push_str(&format!(" ({})", short_sha(revision)));
    }
    field(&mut out, "Sync Status:", &sync);
    field(
        &mut out,
        "Health Status:",
        &style.status(status.health_status().as_str()),
    );
    if let Some(message) = status.health.as_ref().and_then(|h| h.message.as_deref()) {
        field(&mut out, "Health Message:", message);
    }
    if let Some(op) = &status.operation_state {
        let mut text = format!("{:?}", op.phase);
        if let Some(message) = &op.message {
            text.push_str(&format!(": {message}"));
        }
        field(&mut out, "Last Operation:", &text);
    }
    if app.operation.is_some() {
        field(
            &mut out,
            "Operation:",
            "requested, waiting for the controller",
        );
    }
    if let Some(revert) = &status.revert {
        let mut text = format!("{:?} {}", revert.phase, short_sha(&revert.sha));
        if let Some(commit) = &revert.revert_commit {
            text.push_str(&format!(" reverted by {}", short_sha(commit)));
        }
        field(&mut out, "Git revert:", &text);
    }
    for (i, condition) in status.conditions.iter().enumerate() {
        let label = if i == 0 { "Conditions:" } else { "" };
        let message = condition.message.as_deref().unwrap_or_default();
        field(&mut out, label, &format!("{}: {message}", condition.type_));
    }
    out.push('\n');
    out.push_str(&resources_table(&status.resources, style));
    out
}

fn resources_table(resources: &[ResourceStatus], style: Style) -> String {
    if resources.is_empty() {
        return "No resources.\n".to_string();
    }
    let mut rows = vec![
        [
            "GROUP",
            "KIND",
            "NAMESPACE",
            "NAME",
            "STATUS",
            "HEALTH",
            "INFO",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in resources {
        let health = r.health.as_ref();
        let mut info = Vec::new();
        if r.requires_pruning {
            info.push("requires pruning".to_string());
        }
        if let Some(message) = health.and_then(|h| h.message.as_deref()) {
            info.push(message.to_string());
        }
        rows.push(vec![
            r.group.clone(),
            r.kind.clone(),
            r.namespace.clone(),
            r.name.clone(),
            r.status
                .map_or_else(String::new, |s| style.status(s.as_str())),
            health.map_or_else(String::new, |h| style.status(h.status.as_str())),
            info.join("; "),
        ]);
    }
    align(&rows).into_iter().map(|l| l + "\n").collect()
}

/// `app history`: the successful syncs, oldest first.
pub fn render_history(app: &Application, now: Timestamp) -> String {
    let status = app.status.clone().unwrap_or_default();
    if status.history.is_empty() {
        return format!(
            "Application {:?} has no sync history yet.\n",
            app.name_any()
        );
    }
    let mut rows = vec![
        ["ID", "DATE", "AGE", "REVISION", "INITIATED-BY"]
            .map(String::from)
            .to_vec(),
    ];
    for entry in &status.history {
        let by = entry.initiated_by.as_ref().map_or("-".to_string(), |i| {
            if i.automated {
                "automated".to_string()
            } else {
                i.username.clone().unwrap_or_else(|| "-".to_string())
            }
        });
        rows.push(vec![
            entry.id.to_string(),
            entry
                .deployed_at
                .0
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string(),
            human_age(entry.deployed_at.0, now),
            entry.revision.clone(),
            by,
        ]);
    }
    align(&rows).into_iter().map(|l| l + "\n").collect()
}

/// `app diff`: for each object that differs from Git, a header naming it (Argo CD's `=====` form)
/// and the unified diff the controller recorded, from the live object (`---`, `-` lines) to Git
/// (`+++`, `+` lines), as `argocd app diff` shows live against target. `-` lines red, `+` green
/// when colouring. `None` when nothing differs.
pub fn render_diff(app: &Application, style: Style) -> Option<String> {
    let status = app.status.clone().unwrap_or_default();
    let differing: Vec<&ResourceStatus> = status
        .resources
        .iter()
        .filter(|r| r.status == Some(SyncStatusCode::OutOfSync) || r.requires_pruning)
        .collect();
    if differing.is_empty() {
        return None;
    }
    let mut out = String::new();
    for r in differing {
        let group_kind = if r.group.is_empty() {
            r.kind.clone()
        } else {
            format!("{}/{}", r.group, r.kind)
        };
        out.push_str(&format!(
            "===== {group_kind} {}/{} ======\n",
            r.namespace, r.name
        ));
        if r.requires_pruning {
            out.push_str("in the cluster, no longer in Git (requires pruning)\n");
            continue;
        }
        if r.diff.is_empty() {
            out.push_str("differs from Git (no details recorded)\n");
            continue;
        }
        // Lines from a controller that recorded one line per field have no hunks to head.
        if r.diff.first().is_some_and(|l| l.starts_with("@@")) {
            out.push_str(&style.paint(Color::Red, "--- live"));
            out.push('\n');
            out.push_str(&style.paint(Color::Green, "+++ git"));
            out.push('\n');
        }
        for line in &r.diff {
            out.push_str(&diff_line(line, style));
            out.push('\n');
        }
    }
    Some(out)
}

fn diff_line(line: &str, style: Style) -> String {
    let color = if line.starts_with('-') {
        Color::Red
    } else if line.starts_with('+') {
        Color::Green
    } else if line.starts_with("@@") {
        Color::Cyan
    } else {
        return line.to_string();
    };
    style.paint(color, line)
}
