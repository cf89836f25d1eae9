//! CPU time of processes from `/proc`, for the benchmarks that report CPU per message of the
//! servers and services they start.

use std::process::Command;

/// CPU seconds (user + system) of a process so far; 0 if it is gone.
pub fn cpu_secs(pid: u32, ticks_per_sec: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / ticks_per_sec
}

/// Clock ticks per second of `/proc`'s times (`getconf CLK_TCK`, 100 if that fails).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_used_some_cpu_and_a_missing_one_none() {
        let ticks = super::clock_ticks();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {}
        assert!(super::cpu_secs(std::process::id(), ticks) > 0.0);
        assert_eq!(super::cpu_secs(u32::MAX, ticks), 0.0);
    }
}
