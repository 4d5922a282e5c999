//! `proj list|get`: AppProjects, with Argo CD's verbs (`argocd proj`). Projects live in the
//! controller's control namespace, which `-n` (else the context's namespace) selects; the
//! Applications that use a project may be in any namespace its `sourceNamespaces` accept, so they
//! are read in all namespaces (only the chosen one when the user may not list them all).

pub mod render;

use std::io::Write;

use kube::Api;
use kube::api::ListParams;

use crate::api::application::Application;
use crate::api::project::AppProject;
use crate::plugin::cli::ProjCommand;
use crate::plugin::client::Kube;
use crate::plugin::error::{EXIT_OK, PluginError};
use crate::plugin::style::Style;

pub async fn run(
    kube: &Kube,
    command: ProjCommand,
    style: Style,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, PluginError> {
    match command {
        ProjCommand::List => {
            let projects = kube
                .namespaced::<AppProject>()
                .list(&ListParams::default())
                .await
                .map_err(|e| kube.error(e, "AppProject", "", "list AppProjects"))?;
            let apps = applications(kube, err).await?;
            let text = render::render_project_list(&projects.items, &apps);
            out.write_all(text.as_bytes())?;
            Ok(EXIT_OK)
        }
        ProjCommand::Get(args) => {
            let project = kube.get::<AppProject>("AppProject", &args.name).await?;
            let apps = applications(kube, err).await?;
            out.write_all(render::render_project(&project, &apps, style).as_bytes())?;
            Ok(EXIT_OK)
        }
    }
}

/// The Applications of all namespaces; those of the chosen namespace only, with a note on `err`,
/// when the user may not list them all (a team member often may not).
async fn applications(kube: &Kube, err: &mut dyn Write) -> Result<Vec<Application>, PluginError> {
    let all: Api<Application> = Api::all(kube.client.clone());
    let action = "list Applications in all namespaces";
    match all.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(e) => match kube.error(e, "Application", "", action) {
            PluginError::Forbidden(_) => {
                writeln!(
                    err,
                    "note: you may not list Applications in all namespaces; showing those of namespace {:?} only",
                    kube.namespace
                )?;
                kube.namespaced::<Application>()
                    .list(&ListParams::default())
                    .await
                    .map(|list| list.items)
                    .map_err(|e| kube.error(e, "Application", "", "list Applications"))
            }
            other => Err(other),
        },
    }
}
