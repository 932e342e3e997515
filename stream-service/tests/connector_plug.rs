//! The connector RPCs: UNIMPLEMENTED without a plugged-in `ConnectorApi`,
//! forwarded to it (same endpoint as the stream RPCs) with one.

use std::sync::Arc;

use hstream_io_runtime::stream::wire;
use hstream_io_runtime::stream::wire::h_stream_api_client::HStreamApiClient;
use hstream_io_stream_service::{ConnectorApi, Connectors, ServeOptions, start};
use tonic::{Code, Request, Response, Status};

/// Answers GetConnector with the requested name; everything else NOT_FOUND.
struct Echo;

fn nf() -> Status {
    Status::not_found("plugged")
}

#[tonic::async_trait]
impl ConnectorApi for Echo {
    async fn create_connector(
        &self,
        _: Request<wire::CreateConnectorRequest>,
    ) -> Result<Response<wire::Connector>, Status> {
        Err(nf())
    }
    async fn list_connectors(
        &self,
        _: Request<wire::ListConnectorsRequest>,
    ) -> Result<Response<wire::ListConnectorsResponse>, Status> {
        Err(nf())
    }
    async fn get_connector(
        &self,
        req: Request<wire::GetConnectorRequest>,
    ) -> Result<Response<wire::Connector>, Status> {
        Ok(Response::new(wire::Connector {
            name: req.into_inner().name,
            status: "RUNNING".into(),
            ..Default::default()
        }))
    }
    async fn get_connector_spec(
        &self,
        _: Request<wire::GetConnectorSpecRequest>,
    ) -> Result<Response<wire::GetConnectorSpecResponse>, Status> {
        Err(nf())
    }
    async fn get_connector_logs(
        &self,
        _: Request<wire::GetConnectorLogsRequest>,
    ) -> Result<Response<wire::GetConnectorLogsResponse>, Status> {
        Err(nf())
    }
    async fn delete_connector(
        &self,
        _: Request<wire::DeleteConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        Err(nf())
    }
    async fn pause_connector(
        &self,
        _: Request<wire::PauseConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        Err(nf())
    }
    async fn resume_connector(
        &self,
        _: Request<wire::ResumeConnectorRequest>,
    ) -> Result<Response<()>, Status> {
        Err(nf())
    }
    async fn alter_connector_config(
        &self,
        _: Request<wire::AlterConnectorConfigRequest>,
    ) -> Result<Response<()>, Status> {
        Err(nf())
    }
    async fn get_stats(
        &self,
        _: Request<wire::GetStatsRequest>,
    ) -> Result<Response<wire::GetStatsResponse>, Status> {
        Err(nf())
    }
}

async fn client(
    connectors: Option<Connectors>,
) -> (
    hstream_io_stream_service::RunningService,
    HStreamApiClient<tonic::transport::Channel>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = ServeOptions::new(dir.path());
    o.listen = "127.0.0.1:0".parse().unwrap();
    o.connectors = connectors;
    let svc = start(o).await.unwrap();
    let api = HStreamApiClient::connect(format!("http://{}", svc.addr))
        .await
        .unwrap();
    (svc, api, dir)
}

#[tokio::test]
async fn without_a_plug_connector_rpcs_are_unimplemented() {
    let (_svc, mut api, _dir) = client(None).await;
    let err = api
        .get_connector(wire::GetConnectorRequest { name: "c".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(
        err.message().contains("hstream-io serve"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_plugged_api_answers_on_the_same_endpoint() {
    let (_svc, mut api, _dir) = client(Some(Connectors(Arc::new(Echo)))).await;
    let c = api
        .get_connector(wire::GetConnectorRequest { name: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((c.name.as_str(), c.status.as_str()), ("c1", "RUNNING"));
    let err = api
        .pause_connector(wire::PauseConnectorRequest { name: "c1".into() })
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::NotFound, "plugged"));
    // The stream RPCs still work next to it.
    api.list_streams(wire::ListStreamsRequest::default())
        .await
        .unwrap();
}
