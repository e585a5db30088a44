//! Talking to Temporal from the command line: submit a run, follow it, answer a gate, cancel,
//! ask where a run stands.

use temporalio_client::errors::{WorkflowGetResultError, WorkflowUpdateError};
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions,
    WorkflowCancelOptions, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions,
    WorkflowGetResultOptions, WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowStartOptions,
};

use super::config::Endpoint;
use super::types::{Accepted, Answer, Finished, Submission, View};
use super::workflow::ReinsRun;
use super::TemporalError;

/// Connects to the server `endpoint` names, as `identity`.
pub(crate) async fn connect(endpoint: &Endpoint, identity: &str) -> Result<Client, TemporalError> {
    let url = temporalio_client::Url::parse(&endpoint.url()).map_err(|e| {
        TemporalError::new(format!(
            "`{}` is not a Temporal address ({e}); give HOST:PORT",
            endpoint.address
        ))
    })?;
    let tls = match &endpoint.tls {
        None => None,
        Some(t) => {
            let read = |p: &std::path::PathBuf| {
                std::fs::read(p)
                    .map_err(|e| TemporalError::new(format!("cannot read {}: {e}", p.display())))
            };
            let client = match (&t.cert, &t.key) {
                (Some(c), Some(k)) => Some(
                    ClientTlsOptions::builder()
                        .client_cert(read(c)?)
                        .client_private_key(read(k)?)
                        .build(),
                ),
                _ => None,
            };
            let ca = t.ca.as_ref().map(read).transpose()?;
            Some(
                TlsOptions::builder()
                    .maybe_server_root_ca_cert(ca)
                    .maybe_domain(t.domain.clone())
                    .maybe_client_tls_options(client)
                    .build(),
            )
        }
    };
    let options = ConnectionOptions::new(url)
        .identity(identity.to_string())
        .maybe_tls_options(tls)
        .maybe_api_key(endpoint.api_key.clone())
        .connect_timeout(std::time::Duration::from_secs(10))
        .build();
    let connection = Connection::connect(options).await.map_err(|e| {
        TemporalError::new(format!(
            "cannot reach Temporal at {}: {e}; is the server up (`temporal server start-dev`)?",
            endpoint.address
        ))
    })?;
    Client::new(
        connection,
        ClientOptions::new(endpoint.namespace.clone()).build(),
    )
    .map_err(|e| TemporalError::new(format!("cannot make a Temporal client: {e}")))
}

/// Starts the workflow execution of a run; its workflow id is the run id.
pub(crate) async fn submit(
    client: &Client,
    endpoint: &Endpoint,
    submission: Submission,
) -> Result<(), TemporalError> {
    let id = submission.run_id.clone();
    let options = WorkflowStartOptions::new(endpoint.task_queue.clone(), id.clone())
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .build();
    client
        .start_workflow(ReinsRun::run, submission, options)
        .await
        .map_err(|e| TemporalError::new(format!("cannot start run {id} on Temporal: {e}")))?;
    Ok(())
}

/// How a run on Temporal ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It succeeded.
    Success(Finished),
    /// It failed, with why.
    Failed(String),
    /// It was cancelled.
    Cancelled,
    /// It was terminated or timed out on the Temporal side.
    Stopped(String),
}

/// Waits for the run to end.
pub(crate) async fn follow(client: &Client, run_id: &str) -> Result<Ended, TemporalError> {
    let handle = client.get_workflow_handle::<ReinsRun>(run_id.to_string());
    match handle
        .get_result(WorkflowGetResultOptions::builder().build())
        .await
    {
        Ok(f) => Ok(Ended::Success(f)),
        Err(WorkflowGetResultError::Failed(e)) => Ok(Ended::Failed(e.to_string())),
        Err(WorkflowGetResultError::Cancelled { .. }) => Ok(Ended::Cancelled),
        Err(WorkflowGetResultError::Terminated { .. }) => {
            Ok(Ended::Stopped("terminated in Temporal".into()))
        }
        Err(WorkflowGetResultError::TimedOut) => Ok(Ended::Stopped("timed out in Temporal".into())),
        Err(e) => Err(TemporalError::new(format!(
            "cannot follow run {run_id} on Temporal: {e}"
        ))),
    }
}

/// Answers a waiting gate. The workflow refuses an answer to a gate that does not wait or was
/// answered already (first answer wins), with a message saying so.
pub(crate) async fn answer(
    client: &Client,
    run_id: &str,
    answer: Answer,
) -> Result<Accepted, TemporalError> {
    let handle = client.get_workflow_handle::<ReinsRun>(run_id.to_string());
    handle
        .execute_update(
            ReinsRun::answer,
            answer,
            WorkflowExecuteUpdateOptions::builder()
                .update_id(uuid::Uuid::new_v4().to_string())
                .build(),
        )
        .await
        .map_err(|e| match e {
            WorkflowUpdateError::Failed(f) => TemporalError::new(f.message.clone()),
            WorkflowUpdateError::NotFound(_) => not_found(run_id),
            e => TemporalError::new(format!("cannot answer run {run_id} on Temporal: {e}")),
        })
}

fn not_found(run_id: &str) -> TemporalError {
    TemporalError::new(format!(
        "Temporal has no run {run_id} (`reins status {run_id} --temporal ...` with the right namespace?)"
    ))
}

/// Asks Temporal to cancel the run: its worker stops the running nodes and their processes.
pub(crate) async fn cancel(client: &Client, run_id: &str) -> Result<(), TemporalError> {
    let handle = client.get_workflow_handle::<ReinsRun>(run_id.to_string());
    handle
        .cancel(
            WorkflowCancelOptions::builder()
                .reason("reins cancel".to_string())
                .build(),
        )
        .await
        .map_err(|e| TemporalError::new(format!("cannot cancel run {run_id} on Temporal: {e}")))
}

/// Where the run stands: the workflow's own view (the `status` query) and its Temporal status.
pub(crate) async fn status(client: &Client, run_id: &str) -> Result<(View, String), TemporalError> {
    let handle = client.get_workflow_handle::<ReinsRun>(run_id.to_string());
    let described = handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("not found") || text.contains("NotFound") {
                not_found(run_id)
            } else {
                TemporalError::new(format!("cannot describe run {run_id} on Temporal: {e}"))
            }
        })?;
    let temporal_status = format!("{:?}", described.status()).to_lowercase();
    let view = handle
        .query(ReinsRun::status, (), WorkflowQueryOptions::default())
        .await
        .map_err(|e| TemporalError::new(format!("cannot query run {run_id} on Temporal: {e}")))?;
    Ok((view, temporal_status))
}
