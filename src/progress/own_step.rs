//! Steps kiln runs itself after a solve (such as pushing from the Engine's store), shown in the
//! same display as BuildKit's own steps by speaking the same status messages.

use std::time::{SystemTime, UNIX_EPOCH};

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{StatusResponse, Vertex};
use tokio::sync::mpsc::Sender;

/// One running step; finish it with [`OwnStep::done`] or [`OwnStep::failed`].
pub struct OwnStep {
    vertex: Vertex,
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

impl OwnStep {
    pub async fn start(tx: &Sender<StatusResponse>, name: &str) -> OwnStep {
        let vertex = Vertex {
            digest: format!("kiln-step:{}", crate::buildkit::new_id()),
            name: name.to_string(),
            started: Some(now()),
            ..Default::default()
        };
        send(tx, vertex.clone()).await;
        OwnStep { vertex }
    }

    pub async fn done(mut self, tx: &Sender<StatusResponse>) {
        self.vertex.completed = Some(now());
        send(tx, self.vertex).await;
    }

    pub async fn failed(mut self, tx: &Sender<StatusResponse>, error: &str) {
        self.vertex.completed = Some(now());
        self.vertex.error = error.to_string();
        send(tx, self.vertex).await;
    }
}

async fn send(tx: &Sender<StatusResponse>, vertex: Vertex) {
    let _ = tx
        .send(StatusResponse {
            vertexes: vec![vertex],
            ..Default::default()
        })
        .await;
}
