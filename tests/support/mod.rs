//! Helpers shared by the integration tests and benchmarks. Each test binary includes this
//! folder with `mod support;` and uses what it needs.
//!
//! * [`cli`]: driving the built `reins` binary on temp repos;
//! * [`run_repo`]: a temp git repository for `reins run`, `resume`, `status`, `logs` tests;
//! * [`pty`]: the binary under a real pseudo-terminal ([`pty::Terminal`]);
//! * [`http_stub`]: the loopback HTTP core of the two model-API stand-ins;
//! * [`mock_api`]: a stand-in for the Anthropic Messages API, so the real Claude Code CLI runs
//!   offline ([`MockApi`], [`Turn`]);
//! * [`responses_api`]: a stand-in for the OpenAI Responses API, so the real Codex CLI runs
//!   offline ([`ResponsesApi`], [`Reply`]); [`codex`]: finding the pinned Codex CLI
//!   ([`require_codex`]) and its scratch `CODEX_HOME` ([`codex_env`]);
//! * [`claude`]: finding the pinned CLI ([`require_claude`]), its environment against the
//!   stand-in ([`claude_env`]), a sandbox of folders per test ([`Sandbox`]), the scripted fake
//!   CLI ([`fake_claude`]) and process checks ([`process_alive`], [`group_members`]);
//! * [`agents`]: either CLI with its stand-in in a test repository ([`agents::AgentWorld`],
//!   [`agents::Bundled`]);
//! * [`temporal`]: a real Temporal dev server on loopback ([`temporal::DevServer`]).

// Each test binary uses part of this folder; its `pub` items are for the tests, not an API.
#![allow(dead_code, unused_imports, unreachable_pub)]

pub mod agents;
pub mod claude;
pub mod cli;
pub mod codex;
pub mod http_stub;
pub mod mock_api;
pub mod pty;
pub mod repo;
pub mod responses_api;
pub mod run_repo;
pub mod serve;
pub mod temporal;

pub use claude::{claude_env, fake_claude, group_members, process_alive, require_claude, Sandbox};
pub use codex::{codex_env, require_codex};
pub use mock_api::{MockApi, Recorded, Turn};
pub use responses_api::{Reply, ResponsesApi};
