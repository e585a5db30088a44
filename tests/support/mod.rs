//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod cli;
pub mod repo;
pub mod run_repo;
