//! The table of `list rollouts` (pure), with Argo's columns.

use kube::ResourceExt;

use crate::api::rollout::Rollout;
use crate::plugin::info::{RolloutObjects, StrategyInfo, rollout_info};
use crate::plugin::style::Style;
use crate::plugin::table::align;

/// One line per Rollout, sorted by namespace and name; `all_namespaces` adds the NAMESPACE column.
pub fn render_rollout_list(rollouts: &[Rollout], all_namespaces: bool, style: Style) -> String {
    if rollouts.is_empty() {
        return "No Rollouts found.\n".to_string();
    }
    let mut sorted: Vec<&Rollout> = rollouts.iter().collect();
    sorted.sort_by_key(|r| (r.namespace(), r.name_any()));
    let mut rows = vec![header(all_namespaces)];
    rows.extend(sorted.into_iter().map(|r| row(r, all_namespaces, style)));
    align(&rows).into_iter().map(|l| l + "\n").collect()
}

fn header(all_namespaces: bool) -> Vec<String> {
    let mut cells: Vec<String> = Vec::new();
    if all_namespaces {
        cells.push("NAMESPACE".into());
    }
    cells.extend(
        [
            "NAME",
            "STRATEGY",
            "STATUS",
            "STEP",
            "SET-WEIGHT",
            "READY",
            "DESIRED",
            "UP-TO-DATE",
            "AVAILABLE",
        ]
        .map(String::from),
    );
    cells
}

fn row(rollout: &Rollout, all_namespaces: bool, style: Style) -> Vec<String> {
    let info = rollout_info(&RolloutObjects::rollout_only(rollout.clone()));
    let (strategy, step, weight) = match &info.strategy {
        StrategyInfo::Canary {
            step, set_weight, ..
        } => ("Canary", step.clone(), set_weight.to_string()),
        StrategyInfo::BlueGreen => ("BlueGreen", "-".to_string(), "-".to_string()),
    };
    let r = info.replicas;
    let mut cells = Vec::new();
    if all_namespaces {
        cells.push(info.namespace.clone());
    }
    cells.extend([
        info.name.clone(),
        strategy.to_string(),
        style.status(&info.status),
        step,
        weight,
        r.ready.to_string(),
        r.desired.to_string(),
        r.updated.to_string(),
        r.available.to_string(),
    ]);
    cells
}
