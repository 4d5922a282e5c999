//! The revert commit's message (PURE): what failed, in words a reviewer reads in `git log`, and the
//! trailers by which Sluice finds its own reverts again (idempotence across restarts).

/// Trailer naming the reverted commit (full 40-hex sha): the public contract of DESIGN.md.
pub const REVERTS_TRAILER: &str = "Sluice-Reverts";
/// Trailer naming the Rollout (`namespace/name`) whose analysis failed.
pub const ROLLOUT_TRAILER: &str = "Sluice-Rollout";

/// Why the commit is reverted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevertReason {
    /// `namespace/name` of the Rollout.
    pub rollout: String,
    /// The AnalysisRun that failed, if an analysis was the cause.
    pub analysis_run: Option<String>,
    /// The Rollout's abort message: names the metric, its value and the condition (A12).
    pub detail: String,
}

/// The full message of the revert of `sha` (whose summary line is `summary`), as `git revert` words
/// it, with the reason and the trailers.
pub fn revert_message(sha: &str, summary: &str, reason: &RevertReason) -> String {
    let cause = match &reason.analysis_run {
        Some(run) => format!("AnalysisRun {run} failed"),
        None => "the rollout was aborted".to_string(),
    };
    let detail = reason.detail.trim();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!("\n\n{detail}")
    };
    format!(
        "Revert \"{summary}\"\n\n\
         Sluice rolled {rollout} back to its stable revision: {cause}.{detail}\n\n\
         This reverts commit {sha}.\n\n\
         {REVERTS_TRAILER}: {sha}\n\
         {ROLLOUT_TRAILER}: {rollout}\n",
        rollout = reason.rollout,
    )
}

/// The sha a commit message says it reverts, from its `Sluice-Reverts` trailer (the last
/// paragraph's `key: value` lines, as git reads trailers).
pub fn reverted_sha(message: &str) -> Option<&str> {
    let trailers = message.trim_end().rsplit("\n\n").next()?;
    trailers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == REVERTS_TRAILER).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn reason() -> RevertReason {
        RevertReason {
            rollout: "shop/web".into(),
            analysis_run: Some("web-6cc4-2-step".into()),
            detail: "metric \"success-rate\" assessed Failed: value 0.71 did not meet \"result[0] >= 0.95\"".into(),
        }
    }

    #[test]
    fn message_names_rollout_run_metric_and_carries_the_trailers() {
        let message = revert_message(SHA, "web: v2 -> bad", &reason());
        assert_eq!(
            message,
            format!(
                "Revert \"web: v2 -> bad\"\n\n\
                 Sluice rolled shop/web back to its stable revision: AnalysisRun web-6cc4-2-step failed.\n\n\
                 metric \"success-rate\" assessed Failed: value 0.71 did not meet \"result[0] >= 0.95\"\n\n\
                 This reverts commit {SHA}.\n\n\
                 Sluice-Reverts: {SHA}\n\
                 Sluice-Rollout: shop/web\n"
            )
        );
        assert_eq!(reverted_sha(&message), Some(SHA));
    }

    #[test]
    fn an_abort_without_analysis_says_so() {
        let reason = RevertReason {
            analysis_run: None,
            detail: String::new(),
            ..reason()
        };
        let message = revert_message(SHA, "x", &reason);
        assert!(
            message.contains("the rollout was aborted.\n\nThis reverts"),
            "{message}"
        );
    }

    #[test]
    fn only_the_trailer_paragraph_counts() {
        // A body line quoting the trailer is not a trailer.
        let quoted = format!("Fix\n\nSluice-Reverts: {SHA} was wrong\n\nSigned-off-by: a <a@b>\n");
        assert_eq!(reverted_sha(&quoted), None);
        assert_eq!(reverted_sha("Revert \"x\""), None);
        assert_eq!(
            reverted_sha(&format!(
                "Revert\n\nbody\n\nSluice-Reverts:{SHA}\nSluice-Rollout: a/b"
            )),
            Some(SHA)
        );
    }
}
