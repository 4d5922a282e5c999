//! What `/proc` says about a controller process the benches started: its CPU time, peak RSS and
//! whether it still runs. Shared by the benches that run a controller as a separate process, so
//! that the figures are the controller's own, not the harness's.
#![allow(dead_code)] // each bench uses a different subset

/// User + system CPU time of process `pid` so far (`/proc/PID/stat` fields 14 and 15, in clock ticks).
pub fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let fields = stat_fields(pid).ok_or_else(|| format!("cannot read /proc/{pid}/stat"))?;
    let ticks = |field: usize| -> Result<u64, String> {
        fields
            .get(field - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat has no field {field}"))
    };
    Ok((ticks(14)? + ticks(15)?) as f64 / clock_ticks_per_second())
}

/// Whether process `pid` runs (a zombie, state `Z`, has exited).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|state| state != "Z"))
}

/// `/proc/PID/stat` from field 3 (the state) on. The command name, field 2, is in parentheses and
/// may hold spaces, so the split starts after its closing one.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `kB` line of `/proc/PID/status` (e.g. `VmHWM`, the peak resident set).
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The 1-minute load average, as `/proc/loadavg` has it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}
