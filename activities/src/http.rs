//! What the HTTP API clients share: a client with bounded connect and request times that
//! ignores proxy variables and follows no redirect (every client here may carry a secret:
//! a token, an API key), reqwest's errors without the URL they quote, which answers are
//! worth another attempt, and waiting, bounded, until a server answers.

use std::future::Future;
use std::time::Duration;

use foundry_core::{ActivityCx, ActivityError, PollPolicy};
use reqwest::StatusCode;

/// Seconds to open a connection, and for a whole request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How often to try a server that does not answer yet (the deadline is the caller's).
const ANSWER_POLL: PollPolicy = PollPolicy::new(250, 0);

/// The one way a client is configured: bounded times, no proxy (`http_proxy`,
/// `https_proxy`, `ALL_PROXY` and the system's are ignored, so a header never reaches a
/// proxy), and no redirect followed (a 3xx comes back as it is, see [`refused`]).
pub(crate) fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
}

/// `builder` made into a client for the server at `addr` (named in the error).
pub(crate) fn build(
    addr: &str,
    builder: reqwest::ClientBuilder,
) -> Result<reqwest::Client, ActivityError> {
    builder
        .build()
        .map_err(|e| ActivityError::permanent(format!("an HTTP client for {addr}: {e}")))
}

/// An HTTP client for the server at `addr` (named in the error).
pub(crate) fn client(addr: &str) -> Result<reqwest::Client, ActivityError> {
    build(addr, builder())
}

/// A redirect answered to `what`, as a permanent error: it is never followed, since the
/// request's headers (a token, a key) would go to wherever it points.
pub(crate) fn redirected(status: StatusCode, what: &str) -> Option<ActivityError> {
    status.is_redirection().then(|| {
        ActivityError::permanent(format!(
            "{what}: answered {status}, and redirects are not followed\n\
             hint: give the server's own address, the one it answers at without a redirect"
        ))
    })
}

/// reqwest's message without the URL it quotes (the address is named once already).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    match detail.is_empty() {
        true => kind.to_string(),
        false => format!("{kind}: {detail}"),
    }
}

/// An answer a call did not expect, as an error: a 5xx (and 429) is worth another attempt,
/// anything else is not.
pub(crate) fn refused(status: StatusCode, message: String) -> ActivityError {
    if status.is_redirection() {
        ActivityError::permanent(format!("{message} (redirects are not followed)"))
    } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        ActivityError::transient(message)
    } else {
        ActivityError::permanent(message)
    }
}

/// Calls `ask` every 250 ms ([`ANSWER_POLL`]) until it answers, and returns the answer. A permanent error
/// ends the wait at once (it will not get better by waiting); a transient one is tried
/// again until `timeout_s` seconds have passed, then reported as `<what> did not answer
/// within N s: <the last error>`. A cancelled run stops the wait.
pub(crate) async fn until_answered<T, F, Fut>(
    cx: &ActivityCx,
    what: &str,
    timeout_s: u64,
    mut ask: F,
) -> Result<T, ActivityError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ActivityError>>,
{
    let mut poll = ANSWER_POLL.within(Duration::from_secs(timeout_s)).start();
    let mut last = String::new();
    while poll
        .tick_unless(cx.cancel_token())
        .await
        .map_err(|_| ActivityError::permanent(format!("cancelled while waiting for {what}")))?
    {
        match ask().await {
            Ok(answer) => return Ok(answer),
            Err(e) if !e.transient => return Err(e),
            Err(e) => last = e.message,
        }
    }
    Err(ActivityError::transient(format!(
        "{what} did not answer within {timeout_s} s: {last}"
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_wait_retries_the_transient_stops_at_the_permanent_and_is_bounded() {
        let cx = ActivityCx::standalone("wait");
        let tries = AtomicU32::new(0);
        let answer = until_answered(&cx, "the server", 5, || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(ActivityError::transient("refused")),
                n => Ok(n),
            }
        })
        .await
        .expect("answered on the third try");
        assert_eq!(answer, 2);

        let tries = AtomicU32::new(0);
        let e = until_answered(&cx, "the server", 5, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(ActivityError::permanent("404 Not Found"))
        })
        .await
        .expect_err("a permanent error");
        assert_eq!(
            (e.message.as_str(), tries.load(Ordering::SeqCst)),
            ("404 Not Found", 1)
        );

        let tries = AtomicU32::new(0);
        let e = until_answered(&cx, "the server at http://127.0.0.1:9", 0, || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(ActivityError::transient("cannot connect"))
        })
        .await
        .expect_err("never answers");
        assert!(e.transient);
        assert_eq!(tries.load(Ordering::SeqCst), 1, "no time for a second try");
        assert_eq!(
            e.message,
            "the server at http://127.0.0.1:9 did not answer within 0 s: cannot connect"
        );

        let cancelled = ActivityCx::standalone("wait");
        cancelled.cancel_token().cancel();
        let e = until_answered(&cancelled, "the server", 60, || async {
            Err::<(), _>(ActivityError::transient("cannot connect"))
        })
        .await
        .expect_err("cancelled");
        assert!(!e.transient && e.message.contains("cancelled"), "{e:?}");
    }

    #[test]
    fn a_redirect_is_a_permanent_error_that_says_it_is_not_followed() {
        let e = redirected(
            StatusCode::TEMPORARY_REDIRECT,
            "GET x at http://127.0.0.1:1",
        )
        .expect("a 307 is refused");
        assert!(!e.transient);
        assert!(e.message.contains("307") && e.message.contains("redirects are not followed"));
        assert!(redirected(StatusCode::OK, "GET x").is_none());
        let e = refused(StatusCode::MOVED_PERMANENTLY, "GET x: 301".into());
        assert!(!e.transient && e.message.contains("redirects are not followed"));
    }

    #[test]
    fn server_errors_and_throttling_are_worth_another_attempt() {
        assert!(refused(StatusCode::SERVICE_UNAVAILABLE, "x".into()).transient);
        assert!(refused(StatusCode::TOO_MANY_REQUESTS, "x".into()).transient);
        assert!(!refused(StatusCode::NOT_FOUND, "x".into()).transient);
        assert!(!refused(StatusCode::UNAUTHORIZED, "x".into()).transient);
    }
}
