//! `sluice crdgen`: the CRDs of every kind, as YAML, from the Rust types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::api::all_crds;
use crate::error::Result;

/// One CRD document: the file name it is kept under in `crds/` and its YAML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdDocument {
    pub file_name: String,
    pub yaml: String,
}

/// Every CRD as a YAML document, in the order of [`all_crds`].
pub fn crd_documents() -> Result<Vec<CrdDocument>> {
    all_crds().iter().map(crd_document).collect()
}

/// All CRDs as one multi-document YAML stream (`---` between documents), as `sluice crdgen` prints.
pub fn crd_stream() -> Result<String> {
    let docs = crd_documents()?;
    Ok(docs
        .iter()
        .map(|d| d.yaml.as_str())
        .collect::<Vec<_>>()
        .join("---\n"))
}

fn crd_document(crd: &CustomResourceDefinition) -> Result<CrdDocument> {
    Ok(CrdDocument {
        file_name: format!("{}.yaml", crd.spec.names.kind.to_lowercase()),
        yaml: serde_saphyr::to_string(crd)?,
    })
}
