//! The text of the `proj` commands (pure): `list` and `get`, laid out as the `app` views. Patterns
//! are shown as the controller reads them (`crate::gitops::project`): a `!` pattern denies, kinds
//! read `Kind.group` as in the refusals, and an absent list says what it means (no cluster-scoped
//! kinds, all namespaced kinds).

use kube::ResourceExt;

use crate::api::application::Application;
use crate::api::project::{
    AppProject, DestinationServiceAccount, ProjectDestination, ProjectResource,
};
use crate::gitops::project::group_kind;
use crate::gitops::projects::as_rules;
use crate::plugin::app::render::LABEL_WIDTH;
use crate::plugin::style::Style;
use crate::plugin::table::{align, field, field_lines};

/// A list cell shows the entries that fit in this many characters, then how many more there are.
const CELL_CHARS: usize = 60;
/// A description in a list cell is cut after this many characters.
const CELL_DESCRIPTION_CHARS: usize = 40;
/// kubectl's word for an empty cell.
const NONE: &str = "<none>";

/// The Applications that name a project, split by whether the project accepts their namespace.
#[derive(Debug, Default)]
pub struct ProjectApps<'a> {
    /// In the project's own namespace, or in one its `sourceNamespaces` list: they use it.
    pub permitted: Vec<&'a Application>,
    /// In another namespace: the controller refuses to sync them.
    pub refused: Vec<&'a Application>,
}

/// The Applications whose `spec.project` (empty or unset: `default`) names `project`, sorted by
/// namespace and name.
pub fn project_apps<'a>(project: &AppProject, apps: &'a [Application]) -> ProjectApps<'a> {
    let name = project.name_any();
    let control_namespace = project.namespace().unwrap_or_default();
    let rules = as_rules(project);
    let mut naming: Vec<&Application> = apps
        .iter()
        .filter(|app| app.spec.project() == name)
        .collect();
    naming.sort_by_key(|a| (a.namespace(), a.name_any()));
    let (permitted, refused) = naming.into_iter().partition(|app| {
        let namespace = app.namespace().unwrap_or_default();
        rules
            .check_source_namespace(&namespace, &control_namespace)
            .is_ok()
    });
    ProjectApps { permitted, refused }
}

/// `proj list`: one line per project, sorted by name; APPLICATIONS counts those that use it.
pub fn render_project_list(projects: &[AppProject], apps: &[Application]) -> String {
    if projects.is_empty() {
        return "No AppProjects found.\n".to_string();
    }
    let mut sorted: Vec<&AppProject> = projects.iter().collect();
    sorted.sort_by_key(|p| p.name_any());
    let header = [
        "NAME",
        "DESCRIPTION",
        "SOURCE-REPOS",
        "DESTINATIONS",
        "CLUSTER-RESOURCE-WHITELIST",
        "APPLICATIONS",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = vec![header];
    for project in sorted {
        let spec = &project.spec;
        let description = spec.description.as_deref().map(one_line);
        rows.push(vec![
            one_line(&project.name_any()),
            description
                .filter(|d| !d.is_empty())
                .map_or_else(|| "-".to_string(), |d| cut(&d, CELL_DESCRIPTION_CHARS)),
            cell(spec.source_repos.iter().map(|r| one_line(r))),
            cell(spec.destinations.iter().map(destination)),
            cell(spec.cluster_resource_whitelist.iter().flatten().map(kind)),
            project_apps(project, apps).permitted.len().to_string(),
        ]);
    }
    align(&rows).into_iter().map(|l| l + "\n").collect()
}

/// `proj get`: what the project allows and denies, then the Applications that use it.
pub fn render_project(project: &AppProject, apps: &[Application], style: Style) -> String {
    let spec = &project.spec;
    let namespace = project.namespace().unwrap_or_default();
    let mut out = String::new();
    let w = LABEL_WIDTH;
    field(
        &mut out,
        w,
        "Name:",
        &one_line(&format!("{namespace}/{}", project.name_any())),
    );
    let description = spec.description.as_deref().map(one_line);
    field(
        &mut out,
        w,
        "Description:",
        description
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or("-"),
    );
    let (denied_repos, allowed_repos): (Vec<&String>, Vec<&String>) =
        spec.source_repos.iter().partition(|r| r.starts_with('!'));
    field_lines(
        &mut out,
        w,
        "Source Repos:",
        allowed_repos.iter().map(|r| one_line(r)),
        "none (no repository is allowed)",
    );
    field_lines(
        &mut out,
        w,
        "Denied Repos:",
        denied_repos
            .iter()
            .map(|r| one_line(r.strip_prefix('!').unwrap_or(r))),
        "none",
    );
    field_lines(
        &mut out,
        w,
        "Destinations:",
        spec.destinations.iter().map(destination),
        "none (no destination is allowed)",
    );
    field_lines(
        &mut out,
        w,
        "Source Namespaces:",
        spec.source_namespaces.iter().map(|n| one_line(n)),
        &format!("none (only Applications in namespace {namespace})"),
    );
    field_lines(
        &mut out,
        w,
        "Cluster Allowed:",
        spec.cluster_resource_whitelist.iter().flatten().map(kind),
        "no cluster-scoped kinds",
    );
    let blacklist = &spec.cluster_resource_blacklist;
    kinds_field(&mut out, "Cluster Denied:", blacklist, "none", "none");
    let whitelist = &spec.namespace_resource_whitelist;
    let no_kinds = "no namespaced kinds";
    kinds_field(
        &mut out,
        "Namespaced Allowed:",
        whitelist,
        "all kinds",
        no_kinds,
    );
    let blacklist = &spec.namespace_resource_blacklist;
    kinds_field(&mut out, "Namespaced Denied:", blacklist, "none", "none");
    field_lines(
        &mut out,
        w,
        "Service Accounts:",
        spec.destination_service_accounts
            .iter()
            .map(service_account),
        "none (syncs run as the controller)",
    );
    out.push('\n');
    out.push_str(&apps_table(&project_apps(project, apps), style));
    out
}

/// An allow or deny list of kinds, which means something else when absent than when empty.
fn kinds_field(
    out: &mut String,
    label: &str,
    list: &Option<Vec<ProjectResource>>,
    absent: &str,
    empty: &str,
) {
    match list {
        None => field(out, LABEL_WIDTH, label, absent),
        Some(list) => field_lines(out, LABEL_WIDTH, label, list.iter().map(kind), empty),
    }
}

fn apps_table(apps: &ProjectApps<'_>, style: Style) -> String {
    let mut out = if apps.permitted.is_empty() {
        "No Applications use this project.\n".to_string()
    } else {
        let header = ["APPLICATION", "SYNC", "HEALTH"].map(String::from).to_vec();
        let mut rows = vec![header];
        for app in &apps.permitted {
            let status = app.status.as_ref();
            rows.push(vec![
                qualified_name(app),
                style.status(status.map(|s| s.sync_status()).unwrap_or_default().as_str()),
                style.status(
                    status
                        .map(|s| s.health_status())
                        .unwrap_or_default()
                        .as_str(),
                ),
            ]);
        }
        align(&rows).into_iter().map(|l| l + "\n").collect()
    };
    if !apps.refused.is_empty() {
        out.push_str(
            "\nRefused (their namespace is not in sourceNamespaces, so they are not synced):\n",
        );
        for app in &apps.refused {
            out.push_str(&format!("  {}\n", qualified_name(app)));
        }
    }
    out
}

fn qualified_name(app: &Application) -> String {
    one_line(&format!(
        "{}/{}",
        app.namespace().unwrap_or_default(),
        app.name_any()
    ))
}

/// `cluster (namespace)`, as `app get` shows a destination; the cluster by `server` or `name`.
fn destination(d: &ProjectDestination) -> String {
    let server = d.server.as_deref().filter(|s| !s.is_empty());
    let name = d.name.as_deref().filter(|n| !n.is_empty());
    let cluster = match (server, name) {
        (Some(server), None) => pattern(server),
        (None, Some(name)) => pattern(name),
        (Some(server), Some(name)) => format!("{} or {}", pattern(server), pattern(name)),
        (None, None) => "no cluster".to_string(),
    };
    format!("{cluster} ({})", namespace_pattern(d.namespace.as_deref()))
}

/// `server (namespace) as account`.
fn service_account(account: &DestinationServiceAccount) -> String {
    format!(
        "{} ({}) as {}",
        pattern(&account.server),
        namespace_pattern(account.namespace.as_deref()),
        one_line(&account.default_service_account)
    )
}

fn namespace_pattern(namespace: Option<&str>) -> String {
    namespace
        .filter(|n| !n.is_empty())
        .map_or_else(|| "no namespace".to_string(), pattern)
}

/// A glob of a destination; `!glob` matches what the glob does not, and denies what it does.
fn pattern(glob: &str) -> String {
    match glob.strip_prefix('!') {
        Some(denied) => format!("not {}", one_line(denied)),
        None => one_line(glob),
    }
}

/// `Kind.group`, and the object name glob when the entry has one.
fn kind(resource: &ProjectResource) -> String {
    let group_kind = one_line(&group_kind(&resource.group, &resource.kind));
    match resource.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => format!("{group_kind} named {}", one_line(name)),
        None => group_kind,
    }
}

/// Entries joined by `, ` while they fit in [`CELL_CHARS`] (the first always, cut if need be),
/// then how many more there are.
fn cell(entries: impl Iterator<Item = String>) -> String {
    let entries: Vec<String> = entries.collect();
    let Some(first) = entries.first() else {
        return NONE.to_string();
    };
    let mut shown = cut(first, CELL_CHARS);
    let mut count = 1;
    for entry in &entries[1..] {
        if shown.chars().count() + 2 + entry.chars().count() > CELL_CHARS {
            break;
        }
        shown.push_str(", ");
        shown.push_str(entry);
        count += 1;
    }
    if count < entries.len() {
        shown.push_str(&format!(", +{} more", entries.len() - count));
    }
    shown
}

/// At most `max` characters, `…` marking a cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut kept: String = text.chars().take(max.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

/// Text from the cluster on one line: control characters (newlines, terminal escape sequences)
/// become spaces, so a project's text cannot break the layout or drive the terminal.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_cluster_stays_on_one_line_without_escapes() {
        assert_eq!(one_line("a\n b\t\x1b[31mred"), "a b [31mred");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abcd", 4), "abcd");
        assert_eq!(cut("äöüß", 3), "äö…");
    }

    #[test]
    fn cells_show_the_entries_that_fit_then_a_count() {
        let of = |entries: &[String]| cell(entries.iter().cloned());
        assert_eq!(of(&[]), "<none>");
        let short: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(of(&short), "a, b, c");
        let url = |n: usize| format!("https://git.example.com/team-{n}/deploy"); // 34 chars
        assert_eq!(of(&[url(1), url(2)]), format!("{}, +1 more", url(1)));
        let long = "x".repeat(100);
        assert_eq!(of(&[long, url(1)]), format!("{}…, +1 more", "x".repeat(59)));
    }

    #[test]
    fn destinations_name_the_cluster_by_server_or_name_and_negations_read_not() {
        let d = |value: serde_json::Value| {
            destination(&serde_json::from_value::<ProjectDestination>(value).unwrap())
        };
        assert_eq!(
            d(serde_json::json!({"server": "*", "namespace": "!kube-system"})),
            "* (not kube-system)"
        );
        assert_eq!(
            d(serde_json::json!({"name": "in-cluster", "namespace": "team-*"})),
            "in-cluster (team-*)"
        );
        assert_eq!(
            d(serde_json::json!({"server": "https://a", "name": "a"})),
            "https://a or a (no namespace)"
        );
        assert_eq!(d(serde_json::json!({})), "no cluster (no namespace)");
    }
}
