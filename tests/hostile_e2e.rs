//! Hostile input on the local cluster: each attack an author of a CR, a pusher to a tracked
//! repository or a caller of the webhook could make, asserting that the controller stays up and the
//! attack ends in nothing but a clear condition, Event or HTTP status.

mod common;

#[path = "hostile/crash.rs"]
mod crash;
#[path = "hostile/git.rs"]
mod git;
#[path = "hostile/render.rs"]
mod render;
#[path = "hostile/webhook_revert_cache.rs"]
mod webhook_revert_cache;
