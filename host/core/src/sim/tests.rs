//! The simulator run over many seeds, and one seed replayed from `SIM_SEED`.

use super::*;

/// Seeds the unit test runs (more with `SIM_SEEDS`).
const SEEDS: u64 = 300;

#[cfg(not(feature = "mutation-ack-before-fsync"))]
#[test]
fn the_core_keeps_its_promises_over_many_seeded_schedules_with_faults() {
    let seeds = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS);
    let config = SimConfig::default();
    let mut messages = 0;
    let mut crashes = 0;
    let mut fsync_failures = 0;
    for seed in 0..seeds {
        let report = run(seed, &config).unwrap_or_else(|v| panic!("{v}"));
        messages += report.messages;
        crashes += report.crashes;
        fsync_failures += report.fsync_failures;
    }
    // The schedules do what they are for.
    assert!(messages > seeds as usize * 10, "{messages} messages in {seeds} seeds");
    assert!(crashes > 0 && fsync_failures > 0, "{crashes} crashes, {fsync_failures} fsync failures");
}

#[test]
fn without_faults_every_seed_delivers_everything() {
    let config = SimConfig { faults: false, ..SimConfig::default() };
    for seed in 0..100 {
        run(seed, &config).unwrap_or_else(|v| panic!("{v}"));
    }
}

/// With the planted bug (jobs answered although their fsync failed), the simulator finds a
/// violation within this many seeds.
#[cfg(feature = "mutation-ack-before-fsync")]
const PLANTED_BUG_FOUND_WITHIN: u64 = 100;

#[cfg(feature = "mutation-ack-before-fsync")]
#[test]
fn the_planted_ack_before_fsync_bug_is_caught() {
    let config = SimConfig::default();
    let found = (0..PLANTED_BUG_FOUND_WITHIN).find_map(|seed| run(seed, &config).err());
    let violation = found.unwrap_or_else(|| panic!("no violation in {PLANTED_BUG_FOUND_WITHIN} seeds with the planted bug"));
    println!("caught: {violation}");
}

/// `SIM_SEED=n cargo test -p hotline-core --lib sim::tests::replay -- --nocapture`
#[test]
fn replay() {
    let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) else { return };
    match run(seed, &SimConfig::default()) {
        Ok(report) => println!("{report:?}"),
        Err(v) => panic!("{v}"),
    }
}
