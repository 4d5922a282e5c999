//! Attacks of this area; see tests/hostile_e2e.rs.
