//! A response body read from a file as the client takes it, for static
//! files too large to keep in memory: 64 KiB at a time from an offset, for
//! a given length (a whole file or one byte range).

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::io::SeekFrom;
use std::path::Path;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

/// Bytes read from the file per frame.
const CHUNK: usize = 64 * 1024;

/// `len` bytes of a file from some offset.
pub struct FileBody {
    file: tokio::fs::File,
    left: u64,
}

impl FileBody {
    /// Opens `path` at byte `start` for `len` bytes.
    pub async fn open(path: &Path, start: u64, len: u64) -> std::io::Result<Self> {
        let mut file = tokio::fs::File::open(path).await?;
        file.seek(SeekFrom::Start(start)).await?;
        Ok(FileBody { file, left: len })
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = this.left.min(CHUNK as u64) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut read = ReadBuf::new(&mut buf);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        if n == 0 {
            // The file shrank since its length was taken: the response is cut.
            this.left = 0;
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file got shorter while it was being sent",
            ))));
        }
        buf.truncate(n);
        this.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}
