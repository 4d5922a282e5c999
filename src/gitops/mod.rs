//! The GitOps sync core: Git sources, rendering, diff, apply, health and the Application reconciler.
