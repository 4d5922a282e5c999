//! The `Api` a controller reads and watches through: one namespace (`--namespace`), or all of them.

use kube::{Api, Client};

/// `Api<K>` of `namespace`, or of every namespace when it is `None`.
pub fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
