//! The simulator run over many seeds, the planted bugs it must catch, and one seed replayed
//! from `SIM_SEED`.

use super::*;

/// Seeds the unit test runs (more with `SIM_SEEDS`, or with the `hotline-sim` binary).
const SEEDS: u64 = 300;

#[cfg(not(any(feature = "mutation-ack-before-fsync", feature = "mutation-push-before-durable")))]
#[test]
fn the_core_keeps_its_promises_over_many_seeded_schedules_with_faults() {
    let seeds = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS);
    let config = SimConfig::default();
    let mut total = SimReport::default();
    for seed in 0..seeds {
        let report = run(seed, &config).unwrap_or_else(|v| panic!("{v}"));
        total.messages += report.messages;
        total.crashes += report.crashes;
        total.fsync_failures += report.fsync_failures;
        total.policy_swaps += report.policy_swaps;
        total.registrations += report.registrations;
    }
    // The schedules do what they are for: every fault kind happens.
    assert!(total.messages > seeds as usize * 10, "{total:?} in {seeds} seeds");
    assert!(total.crashes > 0 && total.fsync_failures > 0, "{total:?}");
    assert!(total.policy_swaps > 0 && total.registrations > seeds as usize / 10, "{total:?}");
}

#[cfg(not(any(feature = "mutation-ack-before-fsync", feature = "mutation-push-before-durable")))]
#[test]
fn without_faults_every_seed_delivers_everything() {
    let config = SimConfig { faults: false, ..SimConfig::default() };
    for seed in 0..100 {
        run(seed, &config).unwrap_or_else(|v| panic!("{v}"));
    }
}

#[cfg(not(any(feature = "mutation-ack-before-fsync", feature = "mutation-push-before-durable")))]
#[test]
fn a_traced_run_writes_its_schedule_and_matches_the_untraced_run() {
    let config = SimConfig::default();
    let mut lines = Vec::new();
    let traced = run_traced(7, &config, Some(&mut |line: &str| lines.push(line.to_string())));
    let plain = run(7, &config);
    assert_eq!(format!("{traced:?}"), format!("{plain:?}"), "tracing must not change the schedule");
    assert!(lines.len() > 100, "{} lines", lines.len());
    assert!(lines.iter().any(|l| l.contains("connects")), "{lines:?}");
}

#[test]
fn every_invariant_has_a_distinct_name() {
    let names: std::collections::BTreeSet<_> = invariant::ALL.iter().collect();
    assert_eq!(names.len(), invariant::ALL.len());
}

/// With the planted bug (jobs answered although their fsync failed), the simulator finds a
/// violation within this many seeds.
#[cfg(feature = "mutation-ack-before-fsync")]
const ACK_BEFORE_FSYNC_FOUND_WITHIN: u64 = 100;

#[cfg(feature = "mutation-ack-before-fsync")]
#[test]
fn the_planted_ack_before_fsync_bug_is_caught() {
    let config = SimConfig::default();
    let found = (0..ACK_BEFORE_FSYNC_FOUND_WITHIN).find_map(|seed| run(seed, &config).err());
    let violation = found.unwrap_or_else(|| panic!("no violation in {ACK_BEFORE_FSYNC_FOUND_WITHIN} seeds with the planted bug"));
    println!("caught: {violation}");
}

/// With the planted bug (items pushed before they are durable), the simulator finds a
/// violation within this many seeds.
#[cfg(feature = "mutation-push-before-durable")]
const PUSH_BEFORE_DURABLE_FOUND_WITHIN: u64 = 100;

#[cfg(feature = "mutation-push-before-durable")]
#[test]
fn the_planted_push_before_durable_bug_is_caught() {
    let config = SimConfig::default();
    let found = (0..PUSH_BEFORE_DURABLE_FOUND_WITHIN).find_map(|seed| run(seed, &config).err());
    let violation = found.unwrap_or_else(|| panic!("no violation in {PUSH_BEFORE_DURABLE_FOUND_WITHIN} seeds with the planted bug"));
    println!("caught: {violation}");
}

/// `SIM_SEED=n cargo test -p hotline-core --lib sim::tests::replay -- --nocapture` (or
/// `hotline-sim --seed n --verbose`).
#[test]
fn replay() {
    let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) else { return };
    match run_traced(seed, &SimConfig::default(), Some(&mut |line: &str| println!("{line}"))) {
        Ok(report) => println!("{report:?}"),
        Err(v) => panic!("{v}"),
    }
}
