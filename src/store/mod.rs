//! Durable runs: `.reins/runs/<id>/` with an append-only event log as the only run state.
