//! One DNS-over-HTTPS connection (RFC 8484, POST) over HTTP/2: every query is a stream of
//! the same connection, so many are in flight at once.
//!
//! Waiting for a free stream (the server's `SETTINGS_MAX_CONCURRENT_STREAMS`) does not count
//! against the timeout: it counts from when the request is handed to HTTP/2.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;
use tokio_rustls::client::TlsStream;

use super::pool::{ExchangeError, Reply};

const DNS_MESSAGE: &str = "application/dns-message";

/// A reply longer than any DNS message is not read to its end.
const MAX_REPLY: usize = 65_535;

/// An open `DoH` connection; dropping it closes the connection.
pub(super) struct DohConnection {
    send: h2::client::SendRequest<Bytes>,
    uri: http::Uri,
    timeout: Duration,
    lost: Arc<Mutex<Option<String>>>,
    driver: AbortHandle,
}

impl Drop for DohConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl DohConnection {
    /// HTTP/2 on an established TLS stream; `uri` is the `DoH` URL.
    pub(super) async fn start(
        stream: TlsStream<TcpStream>,
        uri: http::Uri,
        timeout: Duration,
    ) -> Result<Self, String> {
        let (send, connection) = h2::client::Builder::new()
            .enable_push(false)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
        let lost = Arc::new(Mutex::new(None));
        let lost_by_driver = Arc::clone(&lost);
        let driver = tokio::spawn(async move {
            let reason = match connection.await {
                Ok(()) => "the control closed the connection".to_owned(),
                Err(e) => format!("HTTP/2 connection failed: {e}"),
            };
            *lost_by_driver
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(reason);
        })
        .abort_handle();
        Ok(Self {
            send,
            uri,
            timeout,
            lost,
            driver,
        })
    }

    /// Whether the connection failed or was closed (it takes no more queries).
    pub(super) fn is_lost(&self) -> bool {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn lose(&self, reason: String) -> ExchangeError {
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        ExchangeError::Lost(lost.get_or_insert(reason).clone())
    }

    /// POSTs `wire` (a query with id 0, RFC 8484 §4.1) and reads the reply.
    pub(super) async fn exchange(&self, wire: Vec<u8>) -> Reply {
        let mut send = self
            .send
            .clone()
            .ready()
            .await
            .map_err(|e| self.lose(format!("HTTP/2 connection failed: {e}")))?;
        let request = http::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, DNS_MESSAGE)
            .header(ACCEPT, DNS_MESSAGE)
            .header(CONTENT_LENGTH, wire.len())
            .body(())
            .map_err(|e| ExchangeError::BadReply(format!("cannot build the request: {e}")))?;
        let (response, mut body) = send
            .send_request(request, false)
            .map_err(|e| self.lose(format!("HTTP/2 request failed: {e}")))?;
        body.send_data(Bytes::from(wire), true)
            .map_err(|e| ExchangeError::Lost(format!("HTTP/2 request failed: {e}")))?;
        let read = async {
            let response = response
                .await
                .map_err(|e| ExchangeError::Lost(format!("HTTP/2 stream failed: {e}")))?;
            let status = response.status();
            let mut body = response.into_body();
            let mut reply = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk =
                    chunk.map_err(|e| ExchangeError::Lost(format!("HTTP/2 stream failed: {e}")))?;
                let _ = body.flow_control().release_capacity(chunk.len());
                if reply.len() + chunk.len() > MAX_REPLY {
                    return Err(ExchangeError::BadReply(
                        "HTTP reply longer than a DNS message".to_owned(),
                    ));
                }
                reply.extend_from_slice(&chunk);
            }
            if !status.is_success() {
                return Err(ExchangeError::BadReply(format!("HTTP status {status}")));
            }
            Ok(reply)
        };
        tokio::time::timeout(self.timeout, read)
            .await
            .unwrap_or(Err(ExchangeError::Timeout(self.timeout)))
    }
}
