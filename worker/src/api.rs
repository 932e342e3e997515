//! HStreamDB's connector RPCs over the [`Worker`], plugged into the stream
//! service's gRPC endpoint ([`hstream_io_stream_service::ConnectorApi`]).

use std::sync::Arc;

use hstream_io_runtime::stream::wire;
use hstream_io_stream_service::ConnectorApi;
use tonic::{Request, Response, Status};

use crate::worker::Worker;

/// The connector RPCs, answered by a [`Worker`].
#[derive(Clone)]
pub struct ConnectorService {
    worker: Arc<Worker>,
}

impl ConnectorService {
    /// Serves `worker`.
    pub fn new(worker: Arc<Worker>) -> Self {
        Self { worker }
    }
}

#[tonic::async_trait]
impl ConnectorApi for ConnectorService {
    async fn create_connector(
        &self,
        req: Request<wire::CreateConnectorRequest>,
    ) -> Result<Response<wire::Connector>, Status> {
        let r = req.into_inner();
        let c = self
            .worker
            .create(&r.name, &r.r#type, &r.target, &r.config)
            .await?;
        Ok(Response::new(c))
    }

    async fn list_connectors(
        &self,
        _req: Request<wire::ListConnectorsRequest>,
    ) -> Result<Response<wire::ListConnectorsResponse>, Status> {
        let connectors = self.worker.list().await?;
        Ok(Response::new(wire::ListConnectorsResponse { connectors }))
    }

    async fn get_connector(
        &self,
        req: Request<wire::GetConnectorRequest>,
    ) -> Result<Response<wire::Connector>, Status> {
        Ok(Response::new(
            self.worker.get(&req.into_inner().name).await?,
        ))
    }

    async fn get_connector_spec(
        &self,
        req: Request<wire::GetConnectorSpecRequest>,
    ) -> Result<Response<wire::GetConnectorSpecResponse>, Status> {
        let r = req.into_inner();
        let spec = self.worker.spec(&r.r#type, &r.target)?;
        Ok(Response::new(wire::GetConnectorSpecResponse { spec }))
    }

    async fn get_connector_logs(
        &self,
        req: Request<wire::GetConnectorLogsRequest>,
    ) -> Result<Response<wire::GetConnectorLogsResponse>, Status> {
        let r = req.into_inner();
        let logs = self.worker.logs(&r.name, r.begin, r.count).await?;
        Ok(Response::new(wire::GetConnectorLogsResponse { logs }))
    }

    async fn delete_connector(
        &self,
        req: Request<wire::DeleteConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        self.worker.delete(&req.into_inner().name).await?;
        Ok(Response::new(()))
    }

    async fn pause_connector(
        &self,
        req: Request<wire::PauseConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        self.worker.pause(&req.into_inner().name).await?;
        Ok(Response::new(()))
    }

    async fn resume_connector(
        &self,
        req: Request<wire::ResumeConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        self.worker.resume(&req.into_inner().name).await?;
        Ok(Response::new(()))
    }

    async fn alter_connector_config(
        &self,
        req: Request<wire::AlterConnectorConfigRequest>,
    ) -> Result<Response<()>, Status> {
        let r = req.into_inner();
        self.worker.alter(&r.name, &r.config).await?;
        Ok(Response::new(()))
    }

    /// HStreamDB's `GetStats` for `connStat` types: per connector name, as
    /// HServer keys them. An empty request asks for every connector stat;
    /// other stat kinds get a `StatError`.
    async fn get_stats(
        &self,
        req: Request<wire::GetStatsRequest>,
    ) -> Result<Response<wire::GetStatsResponse>, Status> {
        use wire::stat_type::Stat;
        let mut asked = req.into_inner().stats;
        if asked.is_empty() {
            asked = [
                wire::ConnectorStats::DeliveredInRecords,
                wire::ConnectorStats::DeliveredInBytes,
                wire::ConnectorStats::IsAlive,
            ]
            .into_iter()
            .map(|k| wire::StatType {
                stat: Some(Stat::ConnStat(k as i32)),
            })
            .collect();
        }
        let stats = self.worker.connector_stats().await?;
        let mut response = wire::GetStatsResponse::default();
        for stat_type in asked {
            let kind = match stat_type.stat {
                Some(Stat::ConnStat(k)) => wire::ConnectorStats::try_from(k).ok(),
                Some(
                    Stat::StreamStat(_) | Stat::SubStat(_) | Stat::QueryStat(_) | Stat::ViewStat(_),
                )
                | None => None,
            };
            let Some(kind) = kind else {
                response.errors.push(wire::StatError {
                    stat_type: Some(stat_type),
                    message: "unsupported stat type: hstream-io serve answers connector stats (connStat: DeliveredInRecords, DeliveredInBytes, IsAlive) only".into(),
                });
                continue;
            };
            let value = |s: &crate::worker::ConnectorStat| -> i64 {
                match kind {
                    wire::ConnectorStats::DeliveredInRecords => s.delivered_in_records as i64,
                    wire::ConnectorStats::DeliveredInBytes => s.delivered_in_bytes as i64,
                    wire::ConnectorStats::IsAlive => i64::from(s.is_alive),
                }
            };
            response.stats_values.push(wire::StatValue {
                stat_type: Some(stat_type),
                stat_values: stats.iter().map(|s| (s.name.clone(), value(s))).collect(),
            });
        }
        Ok(Response::new(response))
    }
}
