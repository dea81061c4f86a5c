//! Steps kiln runs itself after a solve (such as pushing from the Engine's store), shown in the
//! same display as BuildKit's own steps by speaking the same status messages.

use std::time::{SystemTime, UNIX_EPOCH};

use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{StatusResponse, Vertex, VertexLog};
use tokio::sync::mpsc::Sender;

/// One running step; finish it with [`OwnStep::done`] or [`OwnStep::failed`]. A caller that
/// cannot wait for the display sends the messages of [`OwnStep::begin`], [`OwnStep::log`] and
/// [`OwnStep::end`] itself.
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
    /// A step named `name`, started now, and the message that shows it.
    pub fn begin(name: &str) -> (OwnStep, StatusResponse) {
        let step = OwnStep {
            vertex: Vertex {
                digest: format!("kiln-step:{}", crate::buildkit::new_id()),
                name: name.to_string(),
                started: Some(now()),
                ..Default::default()
            },
        };
        let shown = step.status();
        (step, shown)
    }

    /// The message that adds `line` to the step's log.
    pub fn log(&self, line: &str) -> StatusResponse {
        StatusResponse {
            logs: vec![VertexLog {
                vertex: self.vertex.digest.clone(),
                timestamp: Some(now()),
                stream: 1,
                msg: format!("{line}\n").into_bytes(),
            }],
            ..Default::default()
        }
    }

    /// Finishes the step now, as failed with `error` unless it is empty; the message that
    /// shows it.
    pub fn end(mut self, error: &str) -> StatusResponse {
        self.vertex.completed = Some(now());
        self.vertex.error = error.to_string();
        self.status()
    }

    pub async fn start(tx: &Sender<StatusResponse>, name: &str) -> OwnStep {
        let (step, shown) = OwnStep::begin(name);
        let _ = tx.send(shown).await;
        step
    }

    pub async fn done(self, tx: &Sender<StatusResponse>) {
        let _ = tx.send(self.end("")).await;
    }

    pub async fn failed(self, tx: &Sender<StatusResponse>, error: &str) {
        let _ = tx.send(self.end(error)).await;
    }

    fn status(&self) -> StatusResponse {
        StatusResponse {
            vertexes: vec![self.vertex.clone()],
            ..Default::default()
        }
    }
}
