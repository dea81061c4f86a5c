//! SSH agent forwarding: a `RUN --mount=type=ssh` step talks to an agent on the client.
//!
//! BuildKit first calls `CheckAgent` with the mount's id, then opens one `ForwardAgent` stream
//! per connection to the socket it mounted (the id travels as `buildkit.ssh.id` metadata). The
//! stream carries the agent protocol (draft-miller-ssh-agent) in arbitrary chunks. kiln reads
//! whole requests off it and answers each one from an agent:
//!
//! - a socket (`--ssh default`, `--ssh id=/path/agent.sock`): only listing identities and signing
//!   are forwarded; adding, removing, locking and extensions get `SSH_AGENT_FAILURE`, as buildx's
//!   read-only agent does;
//! - private key files (`--ssh id=~/.ssh/id_ed25519`): an in-process agent holding the
//!   unencrypted keys (Ed25519, ECDSA P-256/P-384, RSA with `rsa-sha2-512`).
//!
//! Parsing `--ssh` lives in `build::secrets`; this module only serves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::{Ssh, SshServer};
use bollard_buildkit_proto::moby::sshforward::v1::{
    BytesMessage, CheckAgentRequest, CheckAgentResponse,
};
use futures::Stream;
use ssh_key::{Algorithm, PrivateKey, Signature, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The id a mount without `id=` asks for (`sshforward.DefaultID`).
pub const DEFAULT_ID: &str = "default";

/// The metadata key BuildKit puts the mount's id under (`sshforward.KeySSHID`).
const ID_METADATA_KEY: &str = "buildkit.ssh.id";

/// OpenSSH's limit on one agent message.
const MAX_MESSAGE: usize = 256 * 1024;

// Agent protocol message numbers.
const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
const SSH_AGENT_RSA_SHA2_512: u32 = 4;

/// Unencrypted private keys held in memory for an in-process agent. Debug shows only how many.
#[derive(Clone)]
pub struct Keyring {
    keys: Arc<Vec<PrivateKey>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

impl Keyring {
    /// Reads OpenSSH private key files. Errors name the file, never its content.
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut keys = Vec::new();
        for p in paths {
            keys.push(load_key(p)?);
        }
        Ok(Keyring {
            keys: Arc::new(keys),
        })
    }

    /// Each key's public blob and comment, as `SSH_AGENT_IDENTITIES_ANSWER` lists them.
    fn identities(&self) -> Vec<(Vec<u8>, String)> {
        self.keys
            .iter()
            .filter_map(|k| {
                let blob = k.public_key().to_bytes().ok()?;
                Some((blob, k.comment().to_string()))
            })
            .collect()
    }

    fn sign(&self, key_blob: &[u8], data: &[u8], flags: u32) -> Option<Signature> {
        let key = self
            .keys
            .iter()
            .find(|k| k.public_key().to_bytes().ok().as_deref() == Some(key_blob))?;
        if matches!(key.algorithm(), Algorithm::Rsa { .. }) && flags & SSH_AGENT_RSA_SHA2_512 == 0 {
            // The in-process agent signs RSA only as rsa-sha2-512 (legacy ssh-rsa/SHA-1 and
            // rsa-sha2-256 are refused; clients then try the next algorithm or key).
            return None;
        }
        try_sign(key, data)
    }
}

fn try_sign<K: SigningKey>(key: &K, data: &[u8]) -> Option<Signature> {
    key.try_sign(data).ok()
}

fn load_key(path: &Path) -> Result<PrivateKey> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("failed to stat {}", path.display()))?;
    if meta.len() > 100 * 1024 {
        bail!(
            "failed to parse {}: too large for a private key",
            path.display()
        );
    }
    let text = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let key = PrivateKey::from_openssh(&text).map_err(|e| {
        anyhow::anyhow!(
            "failed to parse {}: not an OpenSSH private key or an agent socket ({e})",
            path.display()
        )
    })?;
    if key.is_encrypted() {
        bail!(
            "{} is protected by a passphrase; kiln loads only unencrypted keys: add it to an ssh-agent and use --ssh default",
            path.display()
        );
    }
    Ok(key)
}

/// Where one ssh id's agent is.
#[derive(Debug, Clone)]
pub enum AgentSource {
    /// An agent's unix socket, dialled once per forwarded connection.
    Socket(PathBuf),
    /// Keys served by kiln's own agent.
    Keys(Keyring),
}

/// The agents one build exposes, by id.
#[derive(Debug, Clone, Default)]
pub struct SshAgents {
    by_id: Arc<BTreeMap<String, AgentSource>>,
}

impl SshAgents {
    pub fn new(entries: impl IntoIterator<Item = (String, AgentSource)>) -> Self {
        SshAgents {
            by_id: Arc::new(entries.into_iter().collect()),
        }
    }
}

pub struct SshService {
    agents: SshAgents,
}

pub fn server(agents: SshAgents) -> SshServer<SshService> {
    SshServer::new(SshService { agents })
}

impl SshService {
    fn agent(&self, id: &str) -> Result<&AgentSource, Status> {
        let id = if id.is_empty() { DEFAULT_ID } else { id };
        // buildx's wording and code (a plain Go error is `Unknown`), so BuildKit shows it
        // without a code prefix: "unset ssh forward key default".
        self.agents
            .by_id
            .get(id)
            .ok_or_else(|| Status::unknown(format!("unset ssh forward key {id}")))
    }
}

#[tonic::async_trait]
impl Ssh for SshService {
    async fn check_agent(
        &self,
        request: Request<CheckAgentRequest>,
    ) -> Result<Response<CheckAgentResponse>, Status> {
        self.agent(&request.into_inner().id)?;
        Ok(Response::new(CheckAgentResponse {}))
    }

    type ForwardAgentStream = Pin<Box<dyn Stream<Item = Result<BytesMessage, Status>> + Send>>;

    async fn forward_agent(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> Result<Response<Self::ForwardAgentStream>, Status> {
        let id = super::metadata_values(request.metadata(), ID_METADATA_KEY)
            .into_iter()
            .find(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_ID.to_string());
        let backend = match self.agent(&id)? {
            AgentSource::Socket(path) => {
                let conn = tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(path))
                    .await
                    .map_err(|_| "timed out".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map_err(|e| {
                        Status::unavailable(format!(
                            "failed to dial agent {id}: failed to connect to {}: {e}",
                            path.display()
                        ))
                    })?;
                Backend::Socket(conn)
            }
            AgentSource::Keys(keys) => Backend::Keys(keys.clone()),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(forward(request.into_inner(), tx, backend));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// What answers the forwarded requests of one connection.
enum Backend {
    Socket(UnixStream),
    Keys(Keyring),
}

impl Backend {
    /// The reply to one request (type byte and body, without the length prefix).
    async fn answer(&mut self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        let kind = request.first().copied().unwrap_or(0);
        if !matches!(
            kind,
            SSH_AGENTC_REQUEST_IDENTITIES | SSH_AGENTC_SIGN_REQUEST
        ) {
            return Ok(vec![SSH_AGENT_FAILURE]);
        }
        match self {
            Backend::Socket(conn) => {
                conn.write_all(&(request.len() as u32).to_be_bytes())
                    .await?;
                conn.write_all(request).await?;
                let len = conn.read_u32().await? as usize;
                if len > MAX_MESSAGE {
                    return Err(std::io::Error::other("agent reply too large"));
                }
                let mut reply = vec![0; len];
                conn.read_exact(&mut reply).await?;
                Ok(reply)
            }
            Backend::Keys(keys) => Ok(answer_from_keys(keys, request)),
        }
    }
}

fn answer_from_keys(keys: &Keyring, request: &[u8]) -> Vec<u8> {
    match request[0] {
        SSH_AGENTC_REQUEST_IDENTITIES => {
            let ids = keys.identities();
            let mut out = vec![SSH_AGENT_IDENTITIES_ANSWER];
            out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
            for (blob, comment) in ids {
                put_string(&mut out, &blob);
                put_string(&mut out, comment.as_bytes());
            }
            out
        }
        SSH_AGENTC_SIGN_REQUEST => {
            let mut rest = &request[1..];
            let signed = (|| {
                let blob = take_string(&mut rest)?;
                let data = take_string(&mut rest)?;
                let flags = take_u32(&mut rest).unwrap_or(0);
                keys.sign(blob, data, flags)
            })();
            match signed {
                Some(sig) => {
                    let mut encoded = Vec::new();
                    put_string(&mut encoded, sig.algorithm().as_str().as_bytes());
                    put_string(&mut encoded, sig.as_bytes());
                    let mut out = vec![SSH_AGENT_SIGN_RESPONSE];
                    put_string(&mut out, &encoded);
                    out
                }
                None => vec![SSH_AGENT_FAILURE],
            }
        }
        _ => vec![SSH_AGENT_FAILURE],
    }
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn take_u32(buf: &mut &[u8]) -> Option<u32> {
    let (head, rest) = buf.split_first_chunk::<4>()?;
    *buf = rest;
    Some(u32::from_be_bytes(*head))
}

fn take_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = take_u32(buf)? as usize;
    if buf.len() < len {
        return None;
    }
    let (s, rest) = buf.split_at(len);
    *buf = rest;
    Some(s)
}

/// Reassembles requests from the stream's chunks and sends back one framed reply per request,
/// until either side closes.
async fn forward(
    mut inbound: Streaming<BytesMessage>,
    tx: tokio::sync::mpsc::Sender<Result<BytesMessage, Status>>,
    mut backend: Backend,
) {
    let mut pending: Vec<u8> = Vec::new();
    loop {
        while let Some(request) = next_frame(&mut pending) {
            let request = match request {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.send(Err(Status::invalid_argument(e))).await;
                    return;
                }
            };
            let reply = match backend.answer(&request).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::unavailable(format!("ssh agent: {e}"))))
                        .await;
                    return;
                }
            };
            let mut data = Vec::with_capacity(reply.len() + 4);
            put_string(&mut data, &reply);
            if tx.send(Ok(BytesMessage { data })).await.is_err() {
                return;
            }
        }
        match inbound.message().await {
            Ok(Some(m)) => pending.extend_from_slice(&m.data),
            Ok(None) | Err(_) => return,
        }
    }
}

/// Takes one whole length-prefixed message off the front of `buf`, if it has arrived.
fn next_frame(buf: &mut Vec<u8>) -> Option<Result<Vec<u8>, String>> {
    let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    if len == 0 || len > MAX_MESSAGE {
        return Some(Err(format!("invalid ssh agent message length {len}")));
    }
    if buf.len() < 4 + len {
        return None;
    }
    let frame = buf[4..4 + len].to_vec();
    buf.drain(..4 + len);
    Some(Ok(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated_key(dir: &Path) -> PathBuf {
        let key = dir.join("id_ed25519");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "kiln-test", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen runs");
        assert!(st.success());
        key
    }

    #[test]
    fn frames_split_across_chunks() {
        let mut buf = vec![0, 0, 0, 2, 11];
        assert!(next_frame(&mut buf).is_none());
        buf.extend_from_slice(&[7, 0, 0]);
        assert_eq!(next_frame(&mut buf).unwrap().unwrap(), vec![11, 7]);
        assert_eq!(buf, vec![0, 0]);
        let mut huge = vec![0x7f, 0, 0, 0];
        assert!(next_frame(&mut huge).unwrap().is_err());
    }

    #[test]
    fn in_process_agent_lists_and_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = generated_key(dir.path());
        let keys = Keyring::load(std::slice::from_ref(&path)).unwrap();
        assert_eq!(format!("{keys:?}"), "Keyring(1 keys)");

        let reply = answer_from_keys(&keys, &[SSH_AGENTC_REQUEST_IDENTITIES]);
        assert_eq!(reply[0], SSH_AGENT_IDENTITIES_ANSWER);
        let mut rest = &reply[1..];
        assert_eq!(take_u32(&mut rest), Some(1));
        let blob = take_string(&mut rest).unwrap().to_vec();
        assert_eq!(take_string(&mut rest).unwrap(), b"kiln-test");

        let mut req = vec![SSH_AGENTC_SIGN_REQUEST];
        put_string(&mut req, &blob);
        put_string(&mut req, b"challenge");
        req.extend_from_slice(&0u32.to_be_bytes());
        let reply = answer_from_keys(&keys, &req);
        assert_eq!(reply[0], SSH_AGENT_SIGN_RESPONSE);
        let mut rest = &reply[1..];
        let mut sig = take_string(&mut rest).unwrap();
        assert_eq!(take_string(&mut sig).unwrap(), b"ssh-ed25519");
        assert_eq!(take_string(&mut sig).unwrap().len(), 64);

        // An unknown key and a write request both fail without touching the keyring.
        let mut req = vec![SSH_AGENTC_SIGN_REQUEST];
        put_string(&mut req, b"not a key");
        put_string(&mut req, b"x");
        assert_eq!(answer_from_keys(&keys, &req), vec![SSH_AGENT_FAILURE]);
        assert_eq!(answer_from_keys(&keys, &[17]), vec![SSH_AGENT_FAILURE]);
    }

    /// OpenSSH's own client checks the in-process agent: `ssh-add -l` lists the key and
    /// `ssh-add -T` has it sign a challenge and verifies the signature.
    #[tokio::test]
    async fn openssh_accepts_the_in_process_agent() {
        let dir = tempfile::tempdir().unwrap();
        let path = generated_key(dir.path());
        let keys = Keyring::load(std::slice::from_ref(&path)).unwrap();
        let sock = dir.path().join("agent.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let keys = keys.clone();
                tokio::spawn(async move {
                    while let Ok(len) = conn.read_u32().await {
                        let mut req = vec![0; len as usize];
                        if conn.read_exact(&mut req).await.is_err() {
                            return;
                        }
                        let reply = answer_from_keys(&keys, &req);
                        let mut framed = Vec::new();
                        put_string(&mut framed, &reply);
                        if conn.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let ssh_add = |args: Vec<std::ffi::OsString>| {
            let sock = sock.clone();
            tokio::task::spawn_blocking(move || {
                std::process::Command::new("ssh-add")
                    .args(args)
                    .env("SSH_AUTH_SOCK", sock)
                    .output()
                    .unwrap()
            })
        };
        let listed = ssh_add(vec!["-l".into()]).await.unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        assert!(listed.contains("kiln-test (ED25519)"), "{listed}");
        let pubkey = path.with_extension("pub");
        let tested = ssh_add(vec!["-T".into(), pubkey.into()]).await.unwrap();
        assert!(
            tested.status.success(),
            "{}",
            String::from_utf8_lossy(&tested.stderr)
        );
    }

    #[test]
    fn encrypted_and_garbage_keys_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let enc = dir.path().join("enc");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "passphrase", "-f"])
            .arg(&enc)
            .status()
            .unwrap();
        assert!(st.success());
        let err = format!("{:#}", Keyring::load(&[enc]).unwrap_err());
        assert!(err.contains("passphrase"), "{err}");
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "SECRET-CONTENT").unwrap();
        let err = format!("{:#}", Keyring::load(&[junk]).unwrap_err());
        assert!(err.contains("failed to parse"), "{err}");
        assert!(!err.contains("SECRET-CONTENT"), "{err}");
    }
}
