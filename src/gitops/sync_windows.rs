//! AppProject sync windows, as Argo CD judges them: a window is active when its cron `schedule`
//! fired less than `duration` ago (in its `timeZone`, UTC by default); it applies to an
//! Application matched by one of its `applications`, `namespaces` or `clusters` globs (all of the
//! given ones with `andOperator`).
//!
//! A sync may run unless a matching `deny` window is active (a manual sync passes when every active
//! deny window has `manualSync`), or matching `allow` windows exist and none is active (a manual
//! sync passes when one of them has `manualSync`). Pure: `now` is passed in.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::api::project::{SyncWindow, SyncWindowKind};
use crate::duration::parse_duration;
use crate::gitops::project::glob_match;

/// The longest window Sluice evaluates: a window is looked for minute by minute over its duration.
const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

/// A window Sluice cannot evaluate, named by its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowError {
    pub index: usize,
    pub message: String,
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spec.syncWindows[{}]: {}", self.index, self.message)
    }
}

/// What an Application's sync is judged against.
pub struct Target<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    /// The destination's server URL and cluster name.
    pub clusters: [&'a str; 2],
}

/// Why a sync may not run now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub reason: String,
}

/// One 5-field cron schedule (minute hour day-of-month month day-of-week), robfig/cron's grammar
/// as Argo CD parses it: `*`, `?`, lists, ranges, steps, month and weekday names, `@hourly` and the
/// other descriptors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day-of-month or day-of-week was `*`/`?`: then both must match, else either (cron's rule).
    day_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn bits(low: u32, high: u32, step: u32) -> u64 {
    (low..=high)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | (1 << v))
}

fn value(text: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return u32::try_from(i)
            .map(|i| i + offset)
            .map_err(|e| e.to_string());
    }
    text.parse()
        .map_err(|_| format!("{text:?} is not a number or a name"))
}

/// One field: a bit per allowed value in `low..=high`; whether it was `*` or `?`.
fn field(
    text: &str,
    low: u32,
    high: u32,
    names: &[&str],
    offset: u32,
) -> Result<(u64, bool), String> {
    let mut set = 0;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("step {step:?} is not a number"))?;
                if step == 0 {
                    return Err("a step of 0".into());
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            star = step.is_none();
            (low, high)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, offset)?, value(b, names, offset)?)
        } else {
            let v = value(range, names, offset)?;
            (v, if step.is_some() { high } else { v })
        };
        if start < low || end > high || start > end {
            return Err(format!("{part:?} is outside {low}-{high}"));
        }
        set |= bits(start, end, step.unwrap_or(1));
    }
    Ok((set, star))
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "schedule {text:?} needs 5 fields (minute hour day-of-month month day-of-week)"
            ));
        };
        fn fail(text: &str, name: &'static str) -> impl Fn(String) -> String {
            move |e| format!("schedule {text:?}: {name}: {e}")
        }
        let (minutes, _) = field(minute, 0, 59, &[], 0).map_err(fail(text, "minute"))?;
        let (hours, _) = field(hour, 0, 23, &[], 0).map_err(fail(text, "hour"))?;
        let (days, day_star) = field(day, 1, 31, &[], 0).map_err(fail(text, "day of month"))?;
        let (months, _) = field(month, 1, 12, &MONTHS, 1).map_err(fail(text, "month"))?;
        // 7 is Sunday too.
        let (mut weekdays, weekday_star) =
            field(weekday, 0, 7, &WEEKDAYS, 0).map_err(fail(text, "day of week"))?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_star: day_star || weekday_star,
        })
    }

    /// Whether the schedule fires at the minute `at` (seconds ignored).
    pub fn fires_at(&self, at: DateTime) -> bool {
        let has = |set: u64, v: i8| v >= 0 && set & (1 << v) != 0;
        let day = has(self.days, at.day());
        let weekday = has(self.weekdays, at.weekday().to_sunday_zero_offset());
        let day_matches = if self.day_star {
            day && weekday
        } else {
            day || weekday
        };
        has(self.minutes, at.minute())
            && has(self.hours, at.hour())
            && has(self.months, at.month())
            && day_matches
    }
}

/// Whether `window` is active at `now`: its schedule fired in `(now - duration, now]`.
pub fn is_active(window: &SyncWindow, now: Timestamp) -> Result<bool, String> {
    let schedule = Schedule::parse(&window.schedule)?;
    let duration = parse_duration(&window.duration).map_err(|e| e.to_string())?;
    if duration > MAX_WINDOW {
        return Err(format!(
            "duration {:?} is longer than the 366 days Sluice evaluates",
            window.duration
        ));
    }
    let zone = match window.time_zone.as_deref().map(str::trim) {
        None | Some("") | Some("UTC") => TimeZone::UTC,
        Some(name) => TimeZone::get(name).map_err(|e| format!("timeZone {name:?}: {e}"))?,
    };
    let minutes = duration.as_secs().div_ceil(60);
    let now_minute = now.as_second() - now.as_second().rem_euclid(60);
    for back in 0..minutes {
        let Ok(seconds) = i64::try_from(back * 60) else {
            break;
        };
        let Ok(at) = Timestamp::from_second(now_minute - seconds) else {
            break;
        };
        // A fire at exactly `now - duration` has ended (Argo's `Next(now - duration) < now`).
        if now.as_second() - at.as_second() >= i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
        {
            break;
        }
        if schedule.fires_at(at.to_zoned(zone.clone()).datetime()) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn any_match(patterns: &[String], values: &[&str]) -> bool {
    patterns.iter().any(|p| {
        values
            .iter()
            .any(|v| !v.is_empty() && glob_match(p, v, false))
    })
}

/// Whether `window` applies to `target`.
pub fn applies_to(window: &SyncWindow, target: &Target<'_>) -> bool {
    let selectors = [
        (&window.applications, vec![target.name]),
        (&window.namespaces, vec![target.namespace]),
        (&window.clusters, target.clusters.to_vec()),
    ];
    let given: Vec<bool> = selectors
        .iter()
        .filter(|(patterns, _)| !patterns.is_empty())
        .map(|(patterns, values)| any_match(patterns, values))
        .collect();
    if window.and_operator.unwrap_or(false) {
        !given.is_empty() && given.iter().all(|m| *m)
    } else {
        given.iter().any(|m| *m)
    }
}

/// Whether a sync of `target` may run at `now` (`manual`: requested by a user, not automated).
pub fn check(
    windows: &[SyncWindow],
    target: &Target<'_>,
    now: Timestamp,
    manual: bool,
) -> Result<Option<Blocked>, WindowError> {
    let mut active_deny = Vec::new();
    let mut allows = 0;
    let mut active_allow = false;
    let mut inactive_allow_manual = false;
    for (index, window) in windows.iter().enumerate() {
        if !applies_to(window, target) {
            continue;
        }
        let active = is_active(window, now).map_err(|message| WindowError { index, message })?;
        match window.kind {
            SyncWindowKind::Deny if active => active_deny.push((index, window)),
            SyncWindowKind::Deny => {}
            SyncWindowKind::Allow => {
                allows += 1;
                active_allow |= active;
                inactive_allow_manual |= !active && window.manual_sync.unwrap_or(false);
            }
        }
    }
    if !active_deny.is_empty() {
        let manual_allowed = active_deny
            .iter()
            .all(|(_, w)| w.manual_sync.unwrap_or(false));
        if manual && manual_allowed {
            return Ok(None);
        }
        let (index, window) = active_deny[0];
        return Ok(Some(Blocked {
            reason: format!(
                "deny window spec.syncWindows[{index}] ({} for {}) is active",
                window.schedule, window.duration
            ),
        }));
    }
    if allows == 0 || active_allow || (manual && inactive_allow_manual) {
        return Ok(None);
    }
    Ok(Some(Blocked {
        reason: "no allow window of the project is active".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn window(v: serde_json::Value) -> SyncWindow {
        serde_json::from_value(v).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    const APP: Target<'static> = Target {
        name: "web",
        namespace: "shop",
        clusters: ["https://kubernetes.default.svc", "in-cluster"],
    };

    #[test]
    fn cron_fields_lists_ranges_steps_names_and_descriptors() {
        let s = Schedule::parse("*/15 9-17 * * mon-fri").unwrap();
        let dt = |t: &str| t.parse::<DateTime>().unwrap();
        // 2026-12-07 is a Monday.
        assert!(s.fires_at(dt("2026-12-07T09:30")));
        assert!(!s.fires_at(dt("2026-12-07T09:31")));
        assert!(!s.fires_at(dt("2026-12-07T18:00")));
        assert!(!s.fires_at(dt("2026-12-06T10:00")), "Sunday");
        let sunday = Schedule::parse("0 0 * * 7").unwrap();
        assert!(sunday.fires_at(dt("2026-12-06T00:00")));
        // Day of month and day of week both restricted: either matches (cron's rule).
        let either = Schedule::parse("0 0 1 * mon").unwrap();
        assert!(either.fires_at(dt("2026-12-07T00:00")));
        assert!(either.fires_at(dt("2026-12-01T00:00")));
        assert!(!either.fires_at(dt("2026-12-02T00:00")));
        assert_eq!(
            Schedule::parse("@daily").unwrap(),
            Schedule::parse("0 0 * * *").unwrap()
        );
        assert!(Schedule::parse("1,2 3 4 JAN,dec ?").is_ok());
        for bad in [
            "* * * *",
            "60 * * * *",
            "* * * * * *",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_is_active_for_its_duration_after_each_fire() {
        let w = window(
            json!({"kind": "deny", "schedule": "0 22 * * *", "duration": "1h",
                              "applications": ["*"]}),
        );
        assert!(!is_active(&w, at("2026-12-07T21:59:59Z")).unwrap());
        assert!(is_active(&w, at("2026-12-07T22:00:00Z")).unwrap());
        assert!(is_active(&w, at("2026-12-07T22:59:59Z")).unwrap());
        assert!(!is_active(&w, at("2026-12-07T23:00:00Z")).unwrap());
        // In its time zone: 22:00 in Amsterdam (UTC+1 in December) is 21:00 UTC.
        let tz = window(
            json!({"kind": "deny", "schedule": "0 22 * * *", "duration": "1h",
                               "timeZone": "Europe/Amsterdam", "applications": ["*"]}),
        );
        assert!(is_active(&tz, at("2026-12-07T21:30:00Z")).unwrap());
        assert!(!is_active(&tz, at("2026-12-07T22:30:00Z")).unwrap());
        let bad = window(
            json!({"kind": "deny", "schedule": "0 22 * * *", "duration": "1h",
                                "timeZone": "Mars/Olympus"}),
        );
        assert!(is_active(&bad, at("2026-12-07T21:30:00Z")).is_err());
    }

    #[test]
    fn windows_apply_by_application_namespace_or_cluster_and_with_and_operator_by_all() {
        let w = |v| window(v);
        assert!(applies_to(
            &w(
                json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h", "applications": ["we*"]})
            ),
            &APP
        ));
        assert!(applies_to(
            &w(
                json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h", "namespaces": ["shop"]})
            ),
            &APP
        ));
        assert!(applies_to(
            &w(
                json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h", "clusters": ["in-cluster"]})
            ),
            &APP
        ));
        assert!(!applies_to(
            &w(
                json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h", "applications": ["api"]})
            ),
            &APP
        ));
        assert!(!applies_to(
            &w(json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h"})),
            &APP
        ));
        let both = json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h",
                          "applications": ["web"], "namespaces": ["other"]});
        assert!(applies_to(&w(both.clone()), &APP));
        let mut and = both;
        and["andOperator"] = json!(true);
        assert!(!applies_to(&w(and), &APP));
    }

    #[test]
    fn deny_wins_allow_windows_gate_and_manual_sync_lets_users_through() {
        let now = at("2026-12-07T22:30:00Z");
        let deny = |manual: bool| {
            window(
                json!({"kind": "deny", "schedule": "0 22 * * *", "duration": "1h",
                          "applications": ["*"], "manualSync": manual}),
            )
        };
        let allow = |schedule: &str, manual: bool| {
            window(
                json!({"kind": "allow", "schedule": schedule, "duration": "1h",
                          "namespaces": ["*"], "manualSync": manual}),
            )
        };
        let blocked =
            |windows: &[SyncWindow], manual| check(windows, &APP, now, manual).unwrap().is_some();
        assert!(!blocked(&[], false));
        assert!(blocked(&[deny(false)], false));
        assert!(blocked(&[deny(false)], true));
        assert!(!blocked(&[deny(true)], true));
        assert!(blocked(&[deny(true)], false));
        // An active allow window does not beat an active deny window.
        assert!(blocked(&[allow("0 22 * * *", false), deny(false)], false));
        assert!(!blocked(&[allow("0 22 * * *", false)], false));
        // Allow windows exist, none active: only a manual sync with manualSync passes.
        assert!(blocked(&[allow("0 8 * * *", false)], false));
        assert!(blocked(&[allow("0 8 * * *", false)], true));
        assert!(!blocked(&[allow("0 8 * * *", true)], true));
        let message = check(&[deny(false)], &APP, now, false)
            .unwrap()
            .unwrap()
            .reason;
        assert!(message.contains("spec.syncWindows[0]"), "{message}");
        let invalid = window(
            json!({"kind": "deny", "schedule": "every night", "duration": "1h",
                                    "applications": ["*"]}),
        );
        let err = check(&[deny(true), invalid], &APP, now, false).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.to_string().contains("spec.syncWindows[1]"), "{err}");
    }
}
