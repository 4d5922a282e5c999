//! What a project permits: Application namespaces (`sourceNamespaces`), repositories, destinations and
//! kinds; objects another Application tracks.
