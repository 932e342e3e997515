//! The plug for connector RPCs: the stream service does not manage connectors
//! itself; a host (e.g. `hstream-io serve` with the IO worker) hands it a
//! [`ConnectorApi`] in [`crate::ServeOptions::connectors`] and the service
//! forwards the nine connector RPCs of `HStreamApi` and `GetStats` to it, on the same gRPC
//! endpoint. Without one, those RPCs answer UNIMPLEMENTED.

use std::fmt;
use std::sync::Arc;

use hstream_io_runtime::stream::wire;
use tonic::{Request, Response, Status};

/// An implementation of HStreamDB's connector RPCs (`CreateConnector` …
/// `AlterConnectorConfig`), with the request and response types of `HStreamApi`.
#[tonic::async_trait]
pub trait ConnectorApi: Send + Sync + 'static {
    /// `CreateConnector`.
    async fn create_connector(
        &self,
        req: Request<wire::CreateConnectorRequest>,
    ) -> Result<Response<wire::Connector>, Status>;
    /// `ListConnectors`.
    async fn list_connectors(
        &self,
        req: Request<wire::ListConnectorsRequest>,
    ) -> Result<Response<wire::ListConnectorsResponse>, Status>;
    /// `GetConnector`.
    async fn get_connector(
        &self,
        req: Request<wire::GetConnectorRequest>,
    ) -> Result<Response<wire::Connector>, Status>;
    /// `GetConnectorSpec`.
    async fn get_connector_spec(
        &self,
        req: Request<wire::GetConnectorSpecRequest>,
    ) -> Result<Response<wire::GetConnectorSpecResponse>, Status>;
    /// `GetConnectorLogs`.
    async fn get_connector_logs(
        &self,
        req: Request<wire::GetConnectorLogsRequest>,
    ) -> Result<Response<wire::GetConnectorLogsResponse>, Status>;
    /// `DeleteConnector`.
    async fn delete_connector(
        &self,
        req: Request<wire::DeleteConnectorRequest>,
    ) -> Result<Response<()>, Status>;
    /// `PauseConnector`.
    async fn pause_connector(
        &self,
        req: Request<wire::PauseConnectorRequest>,
    ) -> Result<Response<()>, Status>;
    /// `ResumeConnector`.
    async fn resume_connector(
        &self,
        req: Request<wire::ResumeConnectorRequest>,
    ) -> Result<Response<()>, Status>;
    /// `AlterConnectorConfig`.
    async fn alter_connector_config(
        &self,
        req: Request<wire::AlterConnectorConfigRequest>,
    ) -> Result<Response<()>, Status>;
    /// `GetStats` (the connector stats; the host answers the whole request).
    async fn get_stats(
        &self,
        req: Request<wire::GetStatsRequest>,
    ) -> Result<Response<wire::GetStatsResponse>, Status>;
}

/// A shared [`ConnectorApi`] (cheap to clone), as [`crate::ServeOptions`] holds it.
#[derive(Clone)]
pub struct Connectors(pub Arc<dyn ConnectorApi>);

impl fmt::Debug for Connectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connectors(..)")
    }
}

/// The answer when no [`ConnectorApi`] is plugged in.
pub(crate) fn not_served(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "{rpc}: this stream service manages no connectors; run `hstream-io serve` (which hosts the IO worker) instead"
    ))
}
