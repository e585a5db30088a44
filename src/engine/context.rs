//! What a node sees: the template context and the `REINS_*` environment variables.
//!
//! The context's shape is documented in [`crate::workflow::template`]. A node sees the values
//! of the nodes it depends on, directly or not (a template may only read those; `validate`
//! checks it). Every value a bash script can read as `{{...}}` it can also read from the
//! environment, which needs no quoting at all:
//!
//! | variable | value |
//! |---|---|
//! | `REINS_RUN_ID` | the run id |
//! | `REINS_RUN_DIR` | absolute path of `.reins/runs/<id>` |
//! | `REINS_ARTIFACTS` | absolute path of the artifacts folder |
//! | `REINS_WORKFLOW` | the workflow's name |
//! | `REINS_NODE` | the node's own id |
//! | `REINS_ATTEMPT` | 1 for the first attempt, 2 for the first retry... |
//! | `REINS_INPUT_<NAME>` | each input |
//! | `REINS_NODE_<ID>_OUTPUT`, `REINS_NODE_<ID>_STATUS` | each upstream node's output and status |
//! | `REINS_NODE_<ID>_OUTPUT_FILE` | the file with an upstream node's whole output (one that ran) |
//!
//! Names are upper-cased with every other character than `A-Z0-9` turned into `_` (`validate`
//! refuses two names that would share a variable). A value no environment can hold — larger
//! than [`ENV_VALUE_LIMIT`] (the kernel limits one variable to 128 KiB), past the budget of all
//! of them, or holding a NUL byte — is written to `nodes/<node>/values/<NAME>` and
//! `<NAME>_FILE` (`REINS_INPUT_X_FILE`, say) holds that file's path instead; for an upstream
//! output, `REINS_NODE_<ID>_OUTPUT_FILE` (the whole output) stands in. An output is at most
//! 1 MiB (the first MiB a node printed); its file always holds all of it. A node that reads a
//! cut (or unexported) output gets a note saying so at the top of its `stderr.log`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Map, Value as Json};

use crate::store::{NodeStatus, RunDir};
use crate::workflow::env_suffix;

/// The largest value exported as an environment variable.
pub const ENV_VALUE_LIMIT: usize = 100 * 1024;

/// The most the `REINS_INPUT_*` and `REINS_NODE_*` values of one node take of its
/// environment; past it, values go through files.
pub const ENV_BUDGET: usize = 1024 * 1024;

/// What every node of a run shares.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The run id.
    pub run_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The working tree (bash nodes start there).
    pub root: PathBuf,
    /// The run directory.
    pub dir: RunDir,
    /// The inputs, defaults applied.
    pub inputs: BTreeMap<String, String>,
    /// The workflow's `env:`, rendered.
    pub env: Vec<(String, String)>,
    /// `{{env.X}}`: the process environment, then the workflow's `env:`.
    pub template_env: BTreeMap<String, String>,
    /// One lock per sticky agent session: two nodes of a session never run at once.
    pub session_locks: super::agent::SessionLocks,
    /// What agent turns have spent, for the budgets.
    pub ledger: super::budget::Ledger,
    /// [`RunInfo::base_context`], built once.
    base: std::sync::OnceLock<Json>,
}

/// Where a node's whole output is kept for the nodes after it: `nodes/<id>/output.txt`.
pub fn output_file(node_dir: &std::path::Path) -> PathBuf {
    node_dir.join("output.txt")
}

/// A context (`base`, as [`RunInfo::base_context`] makes it) with the values of a node's
/// upstream nodes.
pub fn with_nodes<'a>(
    mut base: Json,
    upstream: impl IntoIterator<Item = (&'a str, &'a NodeValue)>,
) -> Json {
    let nodes: Map<String, Json> = upstream
        .into_iter()
        .map(|(id, v)| (id.to_string(), v.to_json()))
        .collect();
    base["nodes"] = Json::Object(nodes);
    base
}

/// A settled node's value as later nodes see it.
#[derive(Debug, Clone)]
pub struct NodeValue {
    /// The status.
    pub status: NodeStatus,
    /// The output (empty for a skipped node).
    pub output: String,
    /// The output parsed as JSON, when it is JSON.
    pub json: Option<Json>,
    /// The file with the whole output (`{{nodes.ID.output_file}}`), for a node that ran.
    pub output_file: Option<PathBuf>,
    /// Set when `output` holds less than the node printed.
    pub truncated: Option<crate::store::Truncation>,
    /// The artifacts folder of a `workflow:` node's child run (`{{nodes.ID.artifacts}}`).
    pub artifacts: Option<PathBuf>,
    /// A fan-out's instances' outputs (`{{nodes.ID.outputs}}`), the JSON text of an array.
    pub outputs: Option<Json>,
}

impl NodeValue {
    /// A value from a status and an output.
    pub fn new(status: NodeStatus, output: String) -> Self {
        let trimmed = output.trim_start();
        let json = if trimmed.starts_with(['{', '[', '"'])
            || matches!(trimmed, "true" | "false" | "null")
            || trimmed.starts_with(|c: char| c.is_ascii_digit() || c == '-')
        {
            serde_json::from_str(&output).ok()
        } else {
            None
        };
        Self {
            status,
            output,
            json,
            output_file: None,
            truncated: None,
            artifacts: None,
            outputs: None,
        }
    }

    /// The same value with the artifacts folder of a child run.
    pub fn with_artifacts(mut self, artifacts: Option<PathBuf>) -> Self {
        self.artifacts = artifacts;
        self
    }

    /// The same value with the file of its whole output, and how it was truncated.
    pub fn with_file(
        mut self,
        file: Option<PathBuf>,
        truncated: Option<crate::store::Truncation>,
    ) -> Self {
        self.output_file = file;
        self.truncated = truncated;
        self
    }

    fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("output".into(), Json::String(self.output.clone()));
        m.insert("status".into(), Json::String(self.status.as_str().into()));
        let file = self.output_file.as_ref().map(|f| f.display().to_string());
        m.insert("output_file".into(), Json::String(file.unwrap_or_default()));
        if let Some(j) = &self.json {
            m.insert("json".into(), j.clone());
        }
        if let Some(a) = &self.artifacts {
            m.insert("artifacts".into(), Json::String(a.display().to_string()));
        }
        if let Some(o) = &self.outputs {
            m.insert("outputs".into(), o.clone());
        }
        Json::Object(m)
    }
}

impl RunInfo {
    /// Describes a run; `env` and `template_env` may still be filled in before the first
    /// context is built.
    pub fn new(
        run_id: String,
        workflow: String,
        root: PathBuf,
        dir: RunDir,
        inputs: BTreeMap<String, String>,
    ) -> Self {
        Self {
            run_id,
            workflow,
            root,
            dir,
            inputs,
            env: Vec::new(),
            // `std::env::vars` would panic on a variable that is not UTF-8: leave those out.
            template_env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            session_locks: Default::default(),
            ledger: Default::default(),
            base: std::sync::OnceLock::new(),
        }
    }

    /// The artifacts folder.
    pub fn artifacts(&self) -> PathBuf {
        self.dir.artifacts_dir()
    }

    /// The context without any node values: what the workflow's `env:` is rendered against.
    pub fn base_context(&self) -> Json {
        self.base
            .get()
            .cloned()
            .unwrap_or_else(|| self.build_base())
    }

    fn build_base(&self) -> Json {
        json!({
            "inputs": self.inputs,
            "nodes": {},
            "artifacts": self.artifacts().display().to_string(),
            "run": { "id": self.run_id },
            "workflow": { "name": self.workflow },
            "env": self.template_env,
        })
    }

    /// The context of a node, given the values of its upstream nodes.
    pub fn context<'a>(
        &self,
        upstream: impl IntoIterator<Item = (&'a str, &'a NodeValue)>,
    ) -> Json {
        with_nodes(self.base_context(), upstream)
    }

    /// The `REINS_*` variables of a node (see the module docs), but `REINS_ATTEMPT`.
    pub fn reins_env<'a>(
        &self,
        node: &str,
        upstream: impl IntoIterator<Item = (&'a str, &'a NodeValue)>,
    ) -> Vec<(String, String)> {
        let mut env = vec![
            ("REINS_RUN_ID".to_string(), self.run_id.clone()),
            (
                "REINS_RUN_DIR".to_string(),
                self.dir.path.display().to_string(),
            ),
            (
                "REINS_ARTIFACTS".to_string(),
                self.artifacts().display().to_string(),
            ),
            ("REINS_WORKFLOW".to_string(), self.workflow.clone()),
            ("REINS_NODE".to_string(), node.to_string()),
        ];
        let mut used = 0;
        // `file_stands_in`: a file with the whole value is exported anyway, so a value that
        // does not fit needs no copy of its own.
        let mut export =
            |env: &mut Vec<(String, String)>, name: String, value: &str, file_stands_in: bool| {
                if value.len() <= ENV_VALUE_LIMIT
                    && used + value.len() <= ENV_BUDGET
                    && !value.contains('\0')
                {
                    used += value.len();
                    env.push((name, value.to_string()));
                    return;
                }
                if file_stands_in {
                    return;
                }
                let path = self.dir.node_dir(node).join("values").join(&name);
                match super::bash::write_value(&self.dir.path, &path, value.as_bytes()) {
                    Ok(()) => env.push((format!("{name}_FILE"), path.display().to_string())),
                    Err(e) => tracing::warn!("cannot write {}: {e}", path.display()),
                }
            };
        for (name, value) in &self.inputs {
            export(
                &mut env,
                format!("REINS_INPUT_{}", env_suffix(name)),
                value,
                false,
            );
        }
        for (id, v) in upstream {
            let key = env_suffix(id);
            export(
                &mut env,
                format!("REINS_NODE_{key}_OUTPUT"),
                &v.output,
                v.output_file.is_some(),
            );
            env.push((
                format!("REINS_NODE_{key}_STATUS"),
                v.status.as_str().to_string(),
            ));
            if let Some(file) = &v.output_file {
                env.push((
                    format!("REINS_NODE_{key}_OUTPUT_FILE"),
                    file.display().to_string(),
                ));
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        let mut info = RunInfo::new(
            "r".into(),
            "wf".into(),
            "/repo".into(),
            RunDir {
                id: "r".into(),
                path: "/repo/.reins/runs/r".into(),
            },
            [("issue-id".to_string(), "42".to_string())].into(),
        );
        info.template_env = [("HOME".to_string(), "/home/x".to_string())].into();
        info
    }

    #[test]
    fn context_has_the_documented_shape() {
        let v = NodeValue::new(NodeStatus::Success, r#"{"n": 3}"#.into());
        let plain = NodeValue::new(NodeStatus::Skipped, String::new());
        let ctx = info().context([("a", &v), ("b", &plain)]);
        assert_eq!(ctx["inputs"]["issue-id"], "42");
        assert_eq!(ctx["nodes"]["a"]["json"]["n"], 3);
        assert_eq!(ctx["nodes"]["a"]["status"], "success");
        assert_eq!(ctx["nodes"]["b"]["output"], "");
        assert!(ctx["nodes"]["b"].get("json").is_none());
        assert_eq!(ctx["artifacts"], "/repo/.reins/runs/r/artifacts");
        assert_eq!(ctx["run"]["id"], "r");
        assert_eq!(ctx["workflow"]["name"], "wf");
        assert_eq!(ctx["env"]["HOME"], "/home/x");
    }

    #[test]
    fn env_names_are_upper_snake() {
        let v = NodeValue::new(NodeStatus::Success, "out".into());
        let env = info().reins_env("me", [("build-1", &v)]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REINS_INPUT_ISSUE_ID"), Some("42"));
        assert_eq!(get("REINS_NODE_BUILD_1_OUTPUT"), Some("out"));
        assert_eq!(get("REINS_NODE_BUILD_1_STATUS"), Some("success"));
        assert_eq!(get("REINS_NODE"), Some("me"));
        assert_eq!(
            get("REINS_ARTIFACTS"),
            Some("/repo/.reins/runs/r/artifacts")
        );
    }

    #[test]
    fn only_json_outputs_get_a_json_value() {
        assert!(NodeValue::new(NodeStatus::Success, "hello".into())
            .json
            .is_none());
        assert!(NodeValue::new(NodeStatus::Success, "[1, 2]".into())
            .json
            .is_some());
        assert!(NodeValue::new(NodeStatus::Success, "12 apples".into())
            .json
            .is_none());
    }
}
