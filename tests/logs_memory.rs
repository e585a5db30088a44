//! `reins logs` streams a log: printing a 200 MB log takes a few megabytes of memory, not 200.
//! Alone in its test binary, so the children's peak memory is only reins' own.

mod support;

use nix::sys::resource::{getrusage, UsageWho};
use support::run_repo::Repo;

#[test]
fn logs_stream_a_200_mb_log_in_bounded_memory() {
    let repo = Repo::new().workflow("wf", "nodes: [{id: a, bash: echo small}]\n");
    repo.reins(["run", "wf"]).run().code(0);
    let run = repo.the_run();
    let log = repo.run_dir(&run).join("nodes/a/stdout.log");
    // A sparse 200 MB file: quick to make and to read.
    std::fs::File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    for args in [&["logs", "last", "a"][..], &["logs", "last"][..]] {
        repo.reins(args).discard_stdout().run().code(0);
    }
    // ru_maxrss is in KiB on Linux: the largest child's peak resident memory.
    let peak_kib = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(
        peak_kib < 64 * 1024,
        "reins logs peaked at {} MiB for a 200 MiB log",
        peak_kib / 1024
    );
}
