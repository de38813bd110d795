//! Writes of one connection gathered until its task yields, then sent as one.
//!
//! Why it exists: HTTP/2 multiplexes many calls on one connection, and its
//! connection task flushes after every turn: under 64 concurrent look-ups
//! most answers (headers, data, trailers) left in TLS records and a `writev`
//! of their own, each a trip through the kernel's TCP stack (3.5 write calls
//! per look-up in all, WAL writes included; 2.7 with this). Here a flush with
//! bytes waiting first lets the other ready tasks run once (the answers whose
//! audit entry the same commit made durable), then writes what they all
//! queued in one go.
//! An idle connection pays one trip through the run queue (microseconds).
//!
//! It sits between HTTP/2 and TLS, so the gathered bytes also become fewer,
//! fuller TLS records.

use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered at most before a write goes out without waiting for a
/// flush (a TLS record holds 16 KiB).
const GATHER_LIMIT: usize = 64 * 1024;

/// An I/O stream whose writes are gathered until a flush finds no other task
/// ready to add to them.
pub struct CoalescedWrites<T> {
    inner: T,
    pending: BytesMut,
    /// The current flush has let the other tasks run once already.
    yielded: bool,
}

impl<T> CoalescedWrites<T> {
    pub fn new(inner: T) -> Self {
        CoalescedWrites {
            inner,
            pending: BytesMut::new(),
            yielded: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> CoalescedWrites<T> {
    /// Writes everything gathered to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.len() >= GATHER_LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        let mut n = 0;
        for b in bufs {
            this.pending.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.pending.is_empty() && !this.yielded {
            // Woken while running, the task goes to the back of its worker's
            // queue: every task ready now runs before this flush goes on.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescedWrites<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

/// The peer's certificates and address, as tonic reads them from the TLS
/// stream inside (identity comes from there: see `authz`).
impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected
    for CoalescedWrites<T>
{
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes wait for a flush; the flush yields once, then sends them all as
    /// one write.
    #[tokio::test]
    async fn writes_go_out_together_at_the_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = CoalescedWrites::new(a);
        w.write_all(b"headers;").await.unwrap();
        w.write_all(b"data;").await.unwrap();
        let mut probe = [0u8; 64];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut probe)).await;
        assert!(early.is_err(), "nothing is sent before the flush");
        w.flush().await.unwrap();
        let n = b.read(&mut probe).await.unwrap();
        assert_eq!(&probe[..n], b"headers;data;");
        // Beyond the limit, writes go out without a flush (bounded memory).
        let big = vec![7u8; GATHER_LIMIT + 1];
        w.write_all(&big).await.unwrap();
        w.write_all(b"x").await.unwrap();
        let mut got = vec![0u8; GATHER_LIMIT + 1];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(got, big);
        w.shutdown().await.unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"x");
    }

    /// A task that becomes ready meanwhile adds its bytes before the write
    /// (one thread: without the yield, the flush would send `first;` alone).
    #[tokio::test(flavor = "current_thread")]
    async fn a_flush_lets_ready_tasks_add_to_it_first() {
        use std::sync::{Arc, Mutex};
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let w = Arc::new(Mutex::new(CoalescedWrites::new(a)));
        let write = |w: Arc<Mutex<CoalescedWrites<tokio::io::DuplexStream>>>,
                     bytes: &'static [u8]| {
            std::future::poll_fn(move |cx| Pin::new(&mut *w.lock().unwrap()).poll_write(cx, bytes))
        };
        write(w.clone(), b"first;").await.unwrap();
        // Ready to run, but not run until this task yields.
        let other = tokio::spawn(write(w.clone(), b"second;"));
        std::future::poll_fn(|cx| Pin::new(&mut *w.lock().unwrap()).poll_flush(cx))
            .await
            .unwrap();
        let mut probe = [0u8; 64];
        let n = b.read(&mut probe).await.unwrap();
        assert_eq!(&probe[..n], b"first;second;");
        other.await.unwrap().unwrap();
    }
}
