//! bollard over SSH: each Engine request goes through its own channel to the Engine's
//! socket on the host (as `docker -H ssh://` does with `docker system dial-stdio`, but
//! without needing a docker CLI on the host). The host's pooled SSH connection carries them all.

use std::sync::Arc;

use bollard::{BollardRequest, Docker};
use foundry_core::ActivityError;
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper::{Response, Uri};
use hyper_util::rt::TokioIo;

use crate::ssh::{ForwardError, PooledSession};

/// The host name bollard puts in its URLs; the request line carries only the path.
const ENGINE_HOST: &str = "docker";

/// A bollard client whose requests travel through `session` to `socket` on its host.
pub(super) fn docker_over(
    session: Arc<PooledSession>,
    socket: &str,
    timeout_s: u64,
    version: &bollard::ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    let socket: Arc<str> = Arc::from(socket);
    let transport = move |request: BollardRequest| {
        let session = session.clone();
        let socket = socket.clone();
        async move { send(&session, &socket, request).await }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("http://{ENGINE_HOST}")),
        timeout_s,
        version,
    )
}

/// One request on a fresh channel: HTTP/1.1 over the stream, the connection driven by a
/// task until the response's body is read (or the stream is upgraded, as attach does).
async fn send(
    session: &PooledSession,
    socket: &str,
    request: BollardRequest,
) -> Result<Response<Incoming>, bollard::errors::Error> {
    let stream = session
        .session()
        .open_unix_socket(socket)
        .await
        .map_err(std::io::Error::other)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(bollard::errors::Error::from)?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "an Engine connection over ssh ended");
        }
    });
    let (mut parts, body) = request.into_parts();
    // A request line in origin form, as a server expects from a client that is not a proxy.
    if let Some(path) = parts.uri.path_and_query() {
        parts.uri = Uri::from(path.clone());
    }
    parts
        .headers
        .entry(HOST)
        .or_insert(HeaderValue::from_static(ENGINE_HOST));
    sender
        .send_request(hyper::Request::from_parts(parts, body))
        .await
        .map_err(bollard::errors::Error::from)
}

/// What the transport's error says when it comes from opening the socket on the host.
pub(super) fn forward_error(e: &bollard::errors::Error) -> Option<&ForwardError> {
    match e {
        bollard::errors::Error::IOError { err } => err.get_ref()?.downcast_ref::<ForwardError>(),
        _ => None,
    }
}

/// An SSH connection that failed, as the endpoint's error.
pub(super) fn connect_error(endpoint: &super::Endpoint, e: ActivityError) -> ActivityError {
    ActivityError {
        message: format!("connecting ({endpoint}): {}", e.message),
        ..e
    }
}
