//! A stream to a Unix socket on the host, through the SSH connection
//! (`direct-streamlocal@openssh.com`, what `ssh -L local:/remote.sock` uses). sshd opens the
//! socket as the logged-in user, so that user needs the socket's permissions.

use russh::ChannelOpenFailure;
use tokio::io::{AsyncRead, AsyncWrite};

use super::SshSession;

/// Why a socket on the host could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The host refused: no such socket, or the user may not open it.
    #[error(
        "{target} {socket}: the host could not open the socket ({reason}): it is not there, or \
         {user} may not use it; hint: check the path, and that {user} is in the socket's group \
         on the host"
    )]
    Refused {
        target: String,
        user: String,
        socket: String,
        reason: String,
    },
    /// The connection is gone, or broke while asking.
    #[error("{target} {socket}: the SSH connection is lost ({detail})")]
    Lost {
        target: String,
        socket: String,
        detail: String,
    },
}

impl ForwardError {
    /// A refusal stays a refusal until someone changes the host; a lost connection may
    /// come back.
    pub fn transient(&self) -> bool {
        matches!(self, ForwardError::Lost { .. })
    }
}

impl SshSession {
    /// Opens `socket` (a path on the host) as a stream over this connection: one channel,
    /// closed when the stream is dropped.
    pub async fn open_unix_socket(
        &self,
        socket: &str,
    ) -> Result<impl AsyncRead + AsyncWrite + Unpin + Send + 'static, ForwardError> {
        match self.handle.channel_open_direct_streamlocal(socket).await {
            Ok(channel) => Ok(channel.into_stream()),
            Err(russh::Error::ChannelOpenFailure(failure)) => {
                let reason = match failure {
                    ChannelOpenFailure::AdministrativelyProhibited => {
                        "prohibited: sshd does not allow socket forwarding".to_string()
                    }
                    ChannelOpenFailure::ConnectFailed => "connect failed".to_string(),
                    ChannelOpenFailure::UnknownChannelType => {
                        "sshd does not know direct-streamlocal".to_string()
                    }
                    ChannelOpenFailure::ResourceShortage => "resource shortage".to_string(),
                    ChannelOpenFailure::Other { code, reason } => format!("{reason} ({code})"),
                };
                Err(ForwardError::Refused {
                    target: self.target.to_string(),
                    user: self.target.user.clone(),
                    socket: socket.to_string(),
                    reason,
                })
            }
            Err(e) => Err(ForwardError::Lost {
                target: self.target.to_string(),
                socket: socket.to_string(),
                detail: e.to_string(),
            }),
        }
    }
}
