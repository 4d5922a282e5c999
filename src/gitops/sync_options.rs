//! Argo CD's sync options, read as Argo CD writes them: at application level
//! (`spec.syncPolicy.syncOptions`, `operation.sync.syncOptions`) and per object (the
//! `argocd.argoproj.io/sync-options` annotation, or Sluice's `sluice.dev/sync-options`, values
//! joined by `,`).
//!
//! Every option of Argo CD's documentation is known here. Those Sluice honours are parsed into
//! [`SyncOptions`]; an option Sluice does not know, one it does not implement (`Prune=confirm`,
//! `Delete=confirm`, `ServerSideApply=false`, `ClientSideApplyMigration=true`), a value it cannot
//! read, or an application-level option written on an object, is a [`SyncOptionProblem`] naming the
//! option and where it was written. Application-level problems refuse the Application
//! (`InvalidSpecError`: the spec cannot be followed); per-object ones refuse the revision
//! (`ComparisonError`: Git declares an object that cannot be applied as written). Either way
//! nothing is applied with an option silently ignored.

use std::fmt;

use serde_json::Value;

use super::object::{ARGO_SYNC_OPTIONS_ANNOTATION, SYNC_OPTIONS_ANNOTATION, annotation, key_of};
use crate::api::application::Application;

/// How pruned objects' dependents are deleted (`PrunePropagationPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Foreground,
    Background,
    Orphan,
}

/// Sync options as read; `None` means not written (the default, or the application's value for a
/// per-object option).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// `Prune=false`: never prune (per object: this object).
    pub prune: Option<bool>,
    /// `Delete=false`: keep the object when the Application is deleted.
    pub delete: Option<bool>,
    /// `Validate=false`: writes with `fieldValidation=Ignore` (kubectl's `--validate=false`).
    pub validate: Option<bool>,
    /// `SkipDryRunOnMissingResource=true`: an object whose kind the cluster does not serve yet is
    /// not dry-run (nor refused when the sync is planned); its kind must be served when it is
    /// applied.
    pub skip_dry_run_on_missing_resource: Option<bool>,
    /// `ApplyOutOfSyncOnly=true`: apply only objects that are not Synced.
    pub apply_out_of_sync_only: Option<bool>,
    /// `PrunePropagationPolicy=foreground|background|orphan`.
    pub prune_propagation_policy: Option<Propagation>,
    /// `PruneLast=true`: prune after every wave is applied and healthy.
    pub prune_last: Option<bool>,
    /// `Replace=true`: replace (PUT) or create instead of a server-side apply.
    pub replace: Option<bool>,
    /// `Force=true`: delete and create again (with `Replace=true` always, else when the apply is
    /// refused, e.g. an immutable field changed).
    pub force: Option<bool>,
    /// `ServerSideApply=true`: what Sluice always does.
    pub server_side_apply: Option<bool>,
    /// `FailOnSharedResource=true`.
    pub fail_on_shared_resource: Option<bool>,
    /// `RespectIgnoreDifferences=true`: `ignoreDifferences` fields keep their live value on sync.
    pub respect_ignore_differences: Option<bool>,
    /// `CreateNamespace=true`.
    pub create_namespace: Option<bool>,
    /// `ClientSideApplyMigration=false`: Sluice never migrates client-side apply ownership.
    pub client_side_apply_migration: Option<bool>,
}

impl SyncOptions {
    /// `self` (an object's options) where written, else `app`'s.
    #[must_use]
    pub fn over(&self, app: &SyncOptions) -> SyncOptions {
        SyncOptions {
            prune: self.prune.or(app.prune),
            delete: self.delete.or(app.delete),
            validate: self.validate.or(app.validate),
            skip_dry_run_on_missing_resource: self
                .skip_dry_run_on_missing_resource
                .or(app.skip_dry_run_on_missing_resource),
            apply_out_of_sync_only: self.apply_out_of_sync_only.or(app.apply_out_of_sync_only),
            prune_propagation_policy: self
                .prune_propagation_policy
                .or(app.prune_propagation_policy),
            prune_last: self.prune_last.or(app.prune_last),
            replace: self.replace.or(app.replace),
            force: self.force.or(app.force),
            server_side_apply: self.server_side_apply.or(app.server_side_apply),
            fail_on_shared_resource: self.fail_on_shared_resource.or(app.fail_on_shared_resource),
            respect_ignore_differences: self
                .respect_ignore_differences
                .or(app.respect_ignore_differences),
            create_namespace: self.create_namespace.or(app.create_namespace),
            client_side_apply_migration: self
                .client_side_apply_migration
                .or(app.client_side_apply_migration),
        }
    }

    pub fn prunes(&self) -> bool {
        self.prune.unwrap_or(true)
    }
    pub fn deletes(&self) -> bool {
        self.delete.unwrap_or(true)
    }
    pub fn validates(&self) -> bool {
        self.validate.unwrap_or(true)
    }
    pub fn skips_dry_run_on_missing_resource(&self) -> bool {
        self.skip_dry_run_on_missing_resource.unwrap_or(false)
    }
    pub fn applies_out_of_sync_only(&self) -> bool {
        self.apply_out_of_sync_only.unwrap_or(false)
    }
    /// Sluice's default is background (Argo CD's is foreground).
    pub fn propagation(&self) -> Propagation {
        self.prune_propagation_policy
            .unwrap_or(Propagation::Background)
    }
    pub fn prunes_last(&self) -> bool {
        self.prune_last.unwrap_or(false)
    }
    pub fn replaces(&self) -> bool {
        self.replace.unwrap_or(false)
    }
    pub fn forces(&self) -> bool {
        self.force.unwrap_or(false)
    }
    pub fn fails_on_shared_resource(&self) -> bool {
        self.fail_on_shared_resource.unwrap_or(false)
    }
    pub fn respects_ignore_differences(&self) -> bool {
        self.respect_ignore_differences.unwrap_or(false)
    }
    pub fn creates_namespace(&self) -> bool {
        self.create_namespace.unwrap_or(false)
    }
}

/// Where options are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Application,
    Object,
}

/// An option that is not followed, and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOptionProblem {
    /// E.g. `spec.syncPolicy.syncOptions[1]`, or `Deployment.apps shop/web annotation
    /// argocd.argoproj.io/sync-options`.
    pub location: String,
    /// The option as written.
    pub option: String,
    pub reason: String,
}

impl fmt::Display for SyncOptionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sync option {:?} in {}: {}",
            self.option, self.location, self.reason
        )
    }
}

/// Every option of Argo CD's documentation, and at which levels Argo CD reads it.
const KNOWN: &[(&str, &[Level])] = &[
    ("Prune", &[Level::Application, Level::Object]),
    ("Delete", &[Level::Application, Level::Object]),
    ("Validate", &[Level::Application, Level::Object]),
    (
        "SkipDryRunOnMissingResource",
        &[Level::Application, Level::Object],
    ),
    ("ApplyOutOfSyncOnly", &[Level::Application]),
    ("PrunePropagationPolicy", &[Level::Application]),
    ("PruneLast", &[Level::Application, Level::Object]),
    ("Replace", &[Level::Application, Level::Object]),
    ("Force", &[Level::Application, Level::Object]),
    ("ServerSideApply", &[Level::Application, Level::Object]),
    ("FailOnSharedResource", &[Level::Application]),
    ("RespectIgnoreDifferences", &[Level::Application]),
    ("CreateNamespace", &[Level::Application]),
    ("ClientSideApplyMigration", &[Level::Application]),
];

/// Parses `options` written at `level`, `location(i)` naming where the i-th one was written.
pub fn parse<'a>(
    options: impl IntoIterator<Item = &'a str>,
    level: Level,
    location: impl Fn(usize) -> String,
) -> (SyncOptions, Vec<SyncOptionProblem>) {
    let mut parsed = SyncOptions::default();
    let mut problems = Vec::new();
    for (index, written) in options.into_iter().enumerate() {
        let written = written.trim();
        if written.is_empty() {
            continue;
        }
        if let Err(reason) = parse_one(&mut parsed, written, level) {
            problems.push(SyncOptionProblem {
                location: location(index),
                option: written.to_string(),
                reason,
            });
        }
    }
    (parsed, problems)
}

fn parse_one(into: &mut SyncOptions, written: &str, level: Level) -> Result<(), String> {
    let (key, value) = written
        .split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| "a sync option is written KEY=VALUE".to_string())?;
    let Some((_, levels)) = KNOWN.iter().find(|(known, _)| *known == key) else {
        let names: Vec<&str> = KNOWN.iter().map(|(k, _)| *k).collect();
        return Err(format!(
            "unknown sync option {key} (Argo CD's options: {})",
            names.join(", ")
        ));
    };
    if !levels.contains(&level) {
        return Err(format!(
            "{key} is an application-level option (spec.syncPolicy.syncOptions); it has no effect on one object"
        ));
    }
    let boolean = || match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key} takes true or false, not {value:?}")),
    };
    match key {
        "Prune" | "Delete" if value.eq_ignore_ascii_case("confirm") => Err(format!(
            "{key}=confirm (waiting for argocd.argoproj.io/deletion-approved) is not implemented by Sluice; use {key}=false to keep the object"
        )),
        "Prune" => boolean().map(|b| into.prune = Some(b)),
        "Delete" => boolean().map(|b| into.delete = Some(b)),
        "Validate" => boolean().map(|b| into.validate = Some(b)),
        "SkipDryRunOnMissingResource" => {
            boolean().map(|b| into.skip_dry_run_on_missing_resource = Some(b))
        }
        "ApplyOutOfSyncOnly" => boolean().map(|b| into.apply_out_of_sync_only = Some(b)),
        "PruneLast" => boolean().map(|b| into.prune_last = Some(b)),
        "Replace" => boolean().map(|b| into.replace = Some(b)),
        "Force" => boolean().map(|b| into.force = Some(b)),
        "FailOnSharedResource" => boolean().map(|b| into.fail_on_shared_resource = Some(b)),
        "RespectIgnoreDifferences" => {
            boolean().map(|b| into.respect_ignore_differences = Some(b))
        }
        "CreateNamespace" => boolean().map(|b| into.create_namespace = Some(b)),
        "ServerSideApply" => match boolean()? {
            true => {
                into.server_side_apply = Some(true);
                Ok(())
            }
            false => Err(
                "ServerSideApply=false (client-side apply) is not implemented: Sluice always applies server-side"
                    .to_string(),
            ),
        },
        "ClientSideApplyMigration" => match boolean()? {
            false => {
                into.client_side_apply_migration = Some(false);
                Ok(())
            }
            true => Err(
                "ClientSideApplyMigration=true is not implemented: Sluice does not move client-side apply field ownership to its manager (write ClientSideApplyMigration=false, which is what it does)"
                    .to_string(),
            ),
        },
        "PrunePropagationPolicy" => {
            let policy = match value.to_ascii_lowercase().as_str() {
                "foreground" => Propagation::Foreground,
                "background" => Propagation::Background,
                "orphan" => Propagation::Orphan,
                _ => {
                    return Err(format!(
                        "PrunePropagationPolicy takes foreground, background or orphan, not {value:?}"
                    ));
                }
            };
            into.prune_propagation_policy = Some(policy);
            Ok(())
        }
        _ => Err(format!("{key} is not implemented by Sluice")),
    }
}

/// The application-level options of `app`'s spec, with the problems of each.
pub fn spec_options(app: &Application) -> (SyncOptions, Vec<SyncOptionProblem>) {
    let options = app
        .spec
        .sync_policy
        .as_ref()
        .map(|p| p.sync_options.as_slice())
        .unwrap_or_default();
    parse(
        options.iter().map(String::as_str),
        Level::Application,
        |i| format!("spec.syncPolicy.syncOptions[{i}]"),
    )
}

/// The options a sync runs with: the spec's, then `extra` (a requested operation's) over them.
pub fn sync_options(app: &Application, extra: &[String]) -> SyncOptions {
    let (spec, _) = spec_options(app);
    let (operation, _) = parse(extra.iter().map(String::as_str), Level::Application, |i| {
        format!("operation.sync.syncOptions[{i}]")
    });
    operation.over(&spec)
}

/// The InvalidSpecError message for `app`'s application-level options (spec and requested
/// operation) that are not followed, if any.
pub fn application_problems(app: &Application) -> Option<String> {
    let (_, mut problems) = spec_options(app);
    if let Some(sync) = app.operation.as_ref().and_then(|op| op.sync.as_ref()) {
        let (_, more) = parse(
            sync.sync_options.iter().map(String::as_str),
            Level::Application,
            |i| format!("operation.sync.syncOptions[{i}]"),
        );
        problems.extend(more);
    }
    join(&problems)
}

/// The options an object's annotations write (Argo CD's and Sluice's), with their problems.
pub fn object_options(obj: &Value) -> (SyncOptions, Vec<SyncOptionProblem>) {
    let mut all = SyncOptions::default();
    let mut problems = Vec::new();
    for key in [SYNC_OPTIONS_ANNOTATION, ARGO_SYNC_OPTIONS_ANNOTATION] {
        let Some(value) = annotation(obj, key) else {
            continue;
        };
        let object = key_of(obj).map_or_else(|| "an object".to_string(), |k| k.to_string());
        let (parsed, more) = parse(value.split(','), Level::Object, |_| {
            format!("{object} annotation {key}")
        });
        all = parsed.over(&all);
        problems.extend(more);
    }
    (all, problems)
}

/// The ComparisonError message for the per-object options of `objects` that are not followed.
pub fn object_problems(objects: &[Value]) -> Option<String> {
    let problems: Vec<SyncOptionProblem> =
        objects.iter().flat_map(|o| object_options(o).1).collect();
    join(&problems)
}

/// `obj`'s options over the sync's.
pub fn effective(obj: &Value, app: &SyncOptions) -> SyncOptions {
    object_options(obj).0.over(app)
}

fn join(problems: &[SyncOptionProblem]) -> Option<String> {
    (!problems.is_empty()).then(|| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app_level(options: &[&str]) -> (SyncOptions, Vec<SyncOptionProblem>) {
        parse(options.iter().copied(), Level::Application, |i| {
            format!("spec.syncPolicy.syncOptions[{i}]")
        })
    }

    #[test]
    fn every_documented_option_is_read() {
        let (options, problems) = app_level(&[
            "Prune=false",
            "Delete=false",
            "Validate=false",
            "SkipDryRunOnMissingResource=true",
            "ApplyOutOfSyncOnly=true",
            "PrunePropagationPolicy=orphan",
            "PruneLast=true",
            "Replace=true",
            "Force=true",
            "ServerSideApply=true",
            "FailOnSharedResource=true",
            "RespectIgnoreDifferences=true",
            " CreateNamespace = TRUE ",
            "ClientSideApplyMigration=false",
        ]);
        assert_eq!(problems, []);
        assert!(!options.prunes() && !options.deletes() && !options.validates());
        assert!(options.skips_dry_run_on_missing_resource());
        assert!(options.applies_out_of_sync_only());
        assert_eq!(options.propagation(), Propagation::Orphan);
        assert!(options.prunes_last() && options.replaces() && options.forces());
        assert_eq!(options.server_side_apply, Some(true));
        assert!(options.fails_on_shared_resource());
        assert!(options.respects_ignore_differences());
        assert!(options.creates_namespace());
        assert_eq!(options.client_side_apply_migration, Some(false));
    }

    #[test]
    fn defaults_are_argo_cds_but_the_propagation() {
        let (options, problems) = app_level(&[]);
        assert_eq!(problems, []);
        assert!(options.prunes() && options.deletes() && options.validates());
        assert!(!options.applies_out_of_sync_only() && !options.prunes_last());
        assert!(!options.replaces() && !options.forces() && !options.creates_namespace());
        assert_eq!(options.propagation(), Propagation::Background);
        for (written, policy) in [
            ("foreground", Propagation::Foreground),
            ("Background", Propagation::Background),
            ("orphan", Propagation::Orphan),
        ] {
            let (options, _) = app_level(&[&format!("PrunePropagationPolicy={written}")]);
            assert_eq!(options.propagation(), policy);
        }
    }

    #[test]
    fn what_is_not_followed_is_named_with_where_it_was_written() {
        let cases = [
            ("Prune=confirm", "Prune=confirm"),
            ("Delete=confirm", "Delete=confirm"),
            ("ServerSideApply=false", "always applies server-side"),
            (
                "ClientSideApplyMigration=true",
                "ClientSideApplyMigration=true",
            ),
            ("PruneFirst=true", "unknown sync option PruneFirst"),
            ("CreateNamespace", "KEY=VALUE"),
            ("CreateNamespace=yes", "takes true or false"),
            (
                "PrunePropagationPolicy=now",
                "foreground, background or orphan",
            ),
            ("prune=false", "unknown sync option prune"),
        ];
        for (written, reason) in cases {
            let (_, problems) = app_level(&["CreateNamespace=true", written]);
            assert_eq!(problems.len(), 1, "{written}");
            let message = problems[0].to_string();
            assert!(
                message.starts_with(&format!(
                    "sync option {written:?} in spec.syncPolicy.syncOptions[1]: "
                )),
                "{message}"
            );
            assert!(message.contains(reason), "{written}: {message}");
        }
    }

    #[test]
    fn application_level_options_on_an_object_are_named() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "annotations": {
                "argocd.argoproj.io/sync-options": "Prune=false, CreateNamespace=true,Bogus=1"}}});
        let (options, problems) = object_options(&obj);
        assert_eq!(options.prune, Some(false));
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with(
            "sync option \"CreateNamespace=true\" in Deployment.apps shop/web annotation argocd.argoproj.io/sync-options: CreateNamespace is an application-level option"
        ), "{}", messages[0]);
        assert!(messages[1].contains("unknown sync option Bogus"));
        assert_eq!(
            object_problems(std::slice::from_ref(&obj)),
            Some(messages.join("; "))
        );
    }

    #[test]
    fn an_objects_option_wins_over_the_applications() {
        let (app, _) = app_level(&["Prune=false", "Replace=true"]);
        let obj = json!({"metadata": {"annotations": {
            "argocd.argoproj.io/sync-options": "Prune=true,Force=true"}}});
        let options = effective(&obj, &app);
        assert!(options.prunes() && options.replaces() && options.forces());
        let plain = json!({"metadata": {"name": "x"}});
        assert!(!effective(&plain, &app).prunes());
    }

    #[test]
    fn the_operations_options_go_over_the_specs() {
        let app: Application = serde_json::from_value(json!({
            "metadata": {"name": "shop"},
            "spec": {"source": {"repoURL": "r"}, "destination": {},
                "syncPolicy": {"syncOptions": ["Replace=true", "PruneLast=true"]}},
            "operation": {"sync": {"syncOptions": ["Replace=false", "Validate=nope"]}}
        }))
        .unwrap();
        let options = sync_options(&app, &["Replace=false".to_string()]);
        assert!(!options.replaces() && options.prunes_last());
        let message = application_problems(&app).unwrap();
        assert!(
            message.starts_with("sync option \"Validate=nope\" in operation.sync.syncOptions[1]"),
            "{message}"
        );
    }
}
